// The NBD server's in-tree view: the public declarations (qblock/nbd_server.h) plus the
// Stream type that Server::serve() takes.
#pragma once

#include "nbd/stream.h"
#include "qblock/nbd_server.h"
