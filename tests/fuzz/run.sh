#!/bin/sh
# tests/fuzz/run.sh BIN SECONDS [WORKDIR]: runs one libFuzzer harness for
# SECONDS, from its seeds (corpus/<name>/) with its dictionary (<name>.dict)
# when they exist. New inputs go to WORKDIR/<name>/ (kept between runs by
# `make fuzz`, a temporary one in CI); a crashing input is written there as
# crash-* and the exit status is non-zero.
set -eu
bin=$1 seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
name=$(basename "$bin"); name=${name#fuzz_}
work=${3:-$here/work}/$name
mkdir -p "$work"
set -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	-print_final_stats=1 -artifact_prefix="$work/"
[ -f "$here/$name.dict" ] && set -- "$@" -dict="$here/$name.dict"
seeds=
[ -d "$here/corpus/$name" ] && seeds=$here/corpus/$name
echo "fuzz: $name for ${seconds}s (seeds: ${seeds:-none}, new inputs: $work)"
# shellcheck disable=SC2086
exec "$bin" "$@" "$work" $seeds
