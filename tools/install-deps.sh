#!/bin/bash
# Install what r1_pg needs to build and test on Debian 12 (run as root or with sudo).
# Installs only the packages that are missing; does nothing when all are there.
set -euo pipefail
pkgs=(make gcc libc6-dev pkg-config
      postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap libpq-dev
      libtap-parser-sourcehandler-pgtap-perl libipc-run-perl
      libjansson-dev libpcre2-dev libutf8proc-dev libopenblas-dev python3
      libcurl4-openssl-dev libssl-dev
      clang libclang-rt-14-dev valgrind pg-bsd-indent
      dpkg-dev debhelper postgresql-server-dev-all)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
