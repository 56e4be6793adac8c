#!/usr/bin/env bash
# `make deps` must see a toolchain that is only half there: libclang-cpp (which
# other packages bring) without libclang, which bindgen loads, is "missing".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
check() { # expected, then the files that exist under the fake /usr/lib
	rm -rf "${root:?}"/*
	for f in "${@:2}"; do mkdir -p "$root/$(dirname "$f")"; touch "$root/$f"; done
	got=$(make -s has-libclang LIB_ROOT="$root")
	if [ "$got" != "$1" ]; then echo "FAIL: with ${*:2} libclang is $got, expected $1"; exit 1; fi
	echo "ok: ${*:2} -> $got"
}
check missing
check missing llvm-14/lib/libclang-cpp.so.14 x86_64-linux-gnu/libclang-cpp.so.14
check found llvm-14/lib/libclang-cpp.so.14 llvm-14/lib/libclang.so.1
check found llvm-16/lib/libclang.so
check found x86_64-linux-gnu/libclang-14.so.1
echo "deps: 5 passed, 0 failed"
