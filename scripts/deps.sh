#!/bin/sh
# Checks the Debian packages copas-c needs and installs the missing ones.
#
#   scripts/deps.sh [group...]      groups: build test lua5.1 lua5.3 lua5.4
#                                   luajit docs quality fuzz bench valgrind
#                                   versions
#                                   all (default: build test; all: every
#                                   group but bench)
#
# As root, missing packages are installed with apt-get (non-interactive).
# Otherwise the exact install command is printed and the script exits 1.
# Exits 0 when everything is present.
set -eu

pkgs_build="gcc make libssl-dev liblua5.4-dev lua5.4 lua-socket lua-sec"
pkgs_test="lua-busted lua-check perl openssl nginx-light python3-pyftpdlib iproute2"
pkgs_lua51="lua5.1 liblua5.1-0-dev"
pkgs_lua53="lua5.3 liblua5.3-dev"
pkgs_lua54="lua5.4 liblua5.4-dev"
pkgs_luajit="luajit libluajit-5.1-dev"
pkgs_docs="lua-ldoc lua-discount"
pkgs_quality="cppcheck clang-tidy lcov luarocks"
pkgs_fuzz="clang-14 libclang-rt-14-dev liblua5.4-dev"
pkgs_valgrind="valgrind"
pkgs_bench="wrk nginx-light lua-cqueues lua-luv gnuplot-nox fonts-dejavu-core"

[ $# -gt 0 ] || set -- build test

wanted=""
for group in "$@"; do
  case "$group" in
    build)    wanted="$wanted $pkgs_build" ;;
    test)     wanted="$wanted $pkgs_test" ;;
    lua5.1)   wanted="$wanted $pkgs_lua51" ;;
    lua5.3)   wanted="$wanted $pkgs_lua53" ;;
    lua5.4)   wanted="$wanted $pkgs_lua54" ;;
    luajit)   wanted="$wanted $pkgs_luajit" ;;
    docs)     wanted="$wanted $pkgs_docs" ;;
    quality)  wanted="$wanted $pkgs_quality" ;;
    fuzz)     wanted="$wanted $pkgs_fuzz" ;;
    bench)    wanted="$wanted $pkgs_bench" ;;
    valgrind) wanted="$wanted $pkgs_valgrind" ;;
    versions) wanted="$wanted $pkgs_lua51 $pkgs_lua53 $pkgs_luajit" ;;
    all)      wanted="$wanted $pkgs_build $pkgs_test $pkgs_lua51 $pkgs_lua53 $pkgs_luajit $pkgs_docs $pkgs_quality $pkgs_fuzz $pkgs_valgrind" ;;
    *) echo "deps.sh: unknown group '$group'" \
            "(build, test, lua5.1, lua5.3, lua5.4, luajit, docs, quality, fuzz, bench, valgrind, versions, all)" >&2
       exit 2 ;;
  esac
done

if ! command -v dpkg >/dev/null 2>&1; then
  echo "deps.sh: dpkg not found; install the equivalents of:$wanted" >&2
  exit 1
fi

missing=""
for p in $wanted; do
  case " $missing " in *" $p "*) continue ;; esac
  # installed means status "install ok installed", not just known to dpkg
  if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing="$missing $p"
  fi
done

[ -n "$missing" ] || exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages. Install them with:" >&2
  echo "  sudo apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi

echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y --no-install-recommends $missing
