// The qblock subcommands; main.cc dispatches to them. Each returns the process exit status.
#pragma once

namespace qblock::tools {

// `qblock io`: qemu-io's invocation and command language (qemu-compat.md §2).
int run_io(int argc, char** argv);
// `qblock bench`: qemu-img bench (qemu-compat.md §4).
int run_bench(int argc, char** argv);
// `qblock create`: qemu-img create (qemu-compat.md §3.1).
int run_create(int argc, char** argv);
// `qblock info`: qemu-img info (qemu-compat.md §3.2).
int run_info(int argc, char** argv);
// `qblock check`: qemu-img check (qemu-compat.md §3.3).
int run_check(int argc, char** argv);
// `qblock map`: qemu-img map (qemu-compat.md §3.4).
int run_map(int argc, char** argv);
// `qblock compare`: qemu-img compare (qemu-compat.md §3.6).
int run_compare(int argc, char** argv);
// `qblock convert`: qemu-img convert (qemu-compat.md §3.5).
int run_convert(int argc, char** argv);
// `qblock dd`: qemu-img dd (qemu-compat.md §3.13).
int run_dd(int argc, char** argv);
// `qblock measure`: qemu-img measure (qemu-compat.md §3.7).
int run_measure(int argc, char** argv);
// `qblock resize`: qemu-img resize (qemu-compat.md §3.9).
int run_resize(int argc, char** argv);
int run_amend(int argc, char** argv);
// `qblock bitmap`: qemu-img bitmap (persistent dirty bitmaps of qcow2 images).
int run_bitmap(int argc, char** argv);
// `qblock commit`: qemu-img commit (qemu-compat.md §3.10).
int run_commit(int argc, char** argv);
// `qblock rebase`: qemu-img rebase (qemu-compat.md §3.11).
int run_rebase(int argc, char** argv);
// `qblock snapshot`: qemu-img snapshot (qemu-compat.md §3.12).
int run_snapshot(int argc, char** argv);
// `qblock nbd`: qemu-nbd's server (issue #5).
int run_nbd(int argc, char** argv);
// `qblock storage-daemon`: qemu-storage-daemon with a QMP monitor (issue 16).
int run_storage_daemon(int argc, char** argv);

}  // namespace qblock::tools
