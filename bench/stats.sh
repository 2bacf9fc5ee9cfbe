# Shared helpers of the bench/ scripts (sourced, not run).

# median VALUE...: the median of the numbers (the mean of the two middle ones for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# minmax VALUE...: "min-max" of the numbers, three decimals.
minmax() { printf '%s\n' "$@" | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.3f-%.3f", lo, hi}'; }

# timed COMMAND...: runs the command with its output discarded and prints its wall time in
# seconds; exits the script with status 1 when the command fails.
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null || { echo "${0##*/}: failed: $*" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}'
}

# ratio A B: B / A, two decimals and an "x".
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", b / a}'; }
