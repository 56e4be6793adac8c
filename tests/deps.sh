#!/usr/bin/env bash
# `make deps` must see a toolchain that is only half there: libclang-cpp (which
# other packages bring) without libclang, which bindgen loads, is "missing";
# a chromium package whose browser does not run, or a Playwright that pip
# lists but that does not import or whose driver does not run, is "broken"
# (make deps reinstalls it); another Playwright than the pinned one is "missing".
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

# Chromium: a stand-in browser and a stand-in dpkg-query.
bin="$root/bin"
state() { # expected, browser script, dpkg-query script
	mkdir -p "$bin"
	printf '#!/bin/sh\n%s\n' "$2" >"$bin/chromium"
	printf '#!/bin/sh\n%s\n' "$3" >"$bin/dpkg-query"
	chmod +x "$bin/chromium" "$bin/dpkg-query"
	got=$(make -s has-chromium CHROMIUM="$bin/chromium" DPKG_QUERY="$bin/dpkg-query")
	if [ "$got" != "$1" ]; then echo "FAIL: chromium ($2 / $3) is $got, expected $1"; exit 1; fi
	echo "ok: chromium ($2 / $3) -> $got"
}
state found 'echo "Chromium 156.0.8078.108 built on Debian GNU/Linux 12 (bookworm)"' 'echo "install ok installed"'
state broken 'exec /nonexistent/chromium "$@"' 'echo "install ok installed"'
state broken 'echo "error while loading shared libraries: libgtk-3.so.0" >&2; exit 127' 'echo "install ok installed"'
state broken 'exit 127' 'echo "install ok half-installed"'
state missing 'exit 127' 'echo "deinstall ok config-files"'
state missing 'exit 127' 'echo "dpkg-query: no packages found matching chromium" >&2; exit 1'

# Playwright: a stand-in package first on PYTHONPATH, its version from its
# dist-info, checked against a stand-in requirements file.
site="$root/site"
playwright() { # expected, installed version, files of the package
	rm -rf "$site"; mkdir -p "$site/playwright-$2.dist-info" "$site/playwright"
	printf 'Metadata-Version: 2.1\nName: playwright\nVersion: %s\n' "$2" >"$site/playwright-$2.dist-info/METADATA"
	: >"$site/playwright/__init__.py"
	for f in "${@:3}"; do
		case $f in
			sync_api.py) : >"$site/playwright/sync_api.py";;
			__main__.py) echo "print('Version $2')" >"$site/playwright/__main__.py";;
			__main__.py:fails) echo "raise SystemExit('driver missing')" >"$site/playwright/__main__.py";;
		esac
	done
	printf 'redis==5.2.1\nplaywright==1.65.2\n' >"$root/requirements.txt"
	got=$(PYTHONPATH="$site" make -s has-playwright REQUIREMENTS="$root/requirements.txt")
	if [ "$got" != "$1" ]; then echo "FAIL: playwright $2 (${*:3}) is $got, expected $1"; exit 1; fi
	echo "ok: playwright $2 (${*:3}) -> $got"
}
playwright found 1.65.2 sync_api.py __main__.py
playwright missing 1.64.0 sync_api.py __main__.py
playwright broken 1.65.2 __main__.py
playwright broken 1.65.2 sync_api.py __main__.py:fails
playwright broken 1.65.2 sync_api.py
echo "deps: 16 passed, 0 failed"
