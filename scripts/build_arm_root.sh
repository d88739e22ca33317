#!/usr/bin/env bash
# Build (once) the arm64 Debian root that `edgecv verify-arm` and the emulated ssh board run in.
#
#   scripts/build_arm_root.sh            # prints the root's path on its last line
#
# Idempotent: a finished root is reused; else the cached tar.zst is unpacked (~1 s); else it is
# built (~5 min, ~300 MB: debootstrap arm64 bookworm minbase + python3, second stage under
# qemu-user through binfmt_misc) and cached as a tar.zst. Needs root (debootstrap, chroot, binfmt)
# for the build only; verify-arm itself runs `qemu-aarch64-static -L ROOT` as any user.
# Where: $EDGECV_ARM_ROOT, else $EDGECV_CACHE/arm/root (default ~/.cache/edgecv/arm/root),
# never inside the repository. Python packages (the aarch64 wheels of ai-edge-litert, numpy and,
# optionally, executorch) go to ROOT/opt/edgecv/site: pip downloads them on the host with
# --platform manylinux2014_aarch64 (no pip runs under emulation).
# The two traps of docs/arm.md are handled here: a fake ARM /proc/cpuinfo and
# /sys/devices/system/cpu/{possible,present} inside the root (without them LiteRT silently skips
# XNNPACK; with the host's x86 cpuinfo it crashes), and QEMU_CPU=max,sme=off at run time.
set -euo pipefail
CACHE="${EDGECV_CACHE:-$HOME/.cache/edgecv}/arm"
ROOT="${EDGECV_ARM_ROOT:-$CACHE/root}"
SUITE=bookworm
VERSION=1  # bump when the root's contents change: the tarball name carries it
TAR="$CACHE/debian-$SUITE-arm64-v$VERSION.tar.zst"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PIP="${PIP:-$REPO/.venv/bin/python -m pip}"
LITERT="$(grep -i '^ai-edge-litert==' "$REPO/constraints.txt" | cut -d= -f3)"
NUMPY="$(grep -i '^numpy==' "$REPO/constraints.txt" | cut -d= -f3)"
EXECUTORCH="$(grep -i '^executorch==' "$REPO/constraints.txt" | cut -d= -f3 || true)"
WITH_EXECUTORCH="${EDGECV_ARM_EXECUTORCH:-0}"  # 1: add executorch + its aarch64 torch (~+700 MB)
case "$ROOT" in "$REPO"/*) echo "error: EDGECV_ARM_ROOT must be outside the repository" >&2; exit 2;; esac
mkdir -p "$CACHE"
log() { echo "build_arm_root: $*" >&2; }

need() {  # install Debian packages when a tool is missing (root only)
  local missing=""
  command -v qemu-aarch64-static >/dev/null || missing+=" qemu-user-static"
  command -v debootstrap >/dev/null || missing+=" debootstrap"
  command -v zstd >/dev/null || missing+=" zstd"
  [ -z "$missing" ] && return 0
  [ "$(id -u)" = 0 ] || { echo "error: needs$missing: sudo apt-get install$missing" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null; }
}

binfmt() {  # register qemu-aarch64 with the kernel so chroot can exec arm64 binaries
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
}

fake_cpu() {  # Neoverse-N1 identity (matches QEMU_CPU=max,sme=off's features closely enough for cpuinfo)
  local n; n=$(nproc)
  mkdir -p "$ROOT/proc" "$ROOT/sys/devices/system/cpu"
  : > "$ROOT/proc/cpuinfo"
  for ((i = 0; i < n; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$i" >> "$ROOT/proc/cpuinfo"
  done
  echo "0-$((n - 1))" > "$ROOT/sys/devices/system/cpu/possible"
  echo "0-$((n - 1))" > "$ROOT/sys/devices/system/cpu/present"
}

site() {  # aarch64 wheels, downloaded and unpacked on the host
  local pkgs=("ai-edge-litert==$LITERT" "numpy==$NUMPY")
  [ "$WITH_EXECUTORCH" = 1 ] && [ -n "$EXECUTORCH" ] && pkgs+=("executorch==$EXECUTORCH" "torch==2.13.0")
  $PIP install -q --no-deps --target "$ROOT/opt/edgecv/site" --only-binary=:all: \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none "${pkgs[@]}"
  if [ "$WITH_EXECUTORCH" = 1 ]; then  # executorch's own pure-python requirements of the runtime path
    $PIP install -q --no-deps --target "$ROOT/opt/edgecv/site" --only-binary=:all: \
      --platform manylinux2014_aarch64 --python-version 3.11 --implementation cp --abi cp311 --abi none \
      typing-extensions flatbuffers packaging ruamel.yaml sympy mpmath filelock jinja2 markupsafe networkx fsspec
  fi
}

if [ -f "$ROOT/.edgecv-root-v$VERSION" ]; then
  log "root ready"
elif [ -f "$TAR" ]; then
  log "unpacking $TAR"
  mkdir -p "$ROOT"
  zstd -dc "$TAR" | tar -x -C "$ROOT"
else
  need
  [ "$(id -u)" = 0 ] || { echo "error: building the arm64 root needs root (debootstrap/chroot); or set EDGECV_ARM_ROOT to a prebuilt one" >&2; exit 2; }
  binfmt
  rm -rf "$ROOT.partial"
  log "debootstrap $SUITE arm64 (first stage) from $MIRROR"
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-venv "$SUITE" "$ROOT.partial" "$MIRROR" >&2
  log "second stage under qemu-user (a few minutes)"
  QEMU_CPU=max,sme=off chroot "$ROOT.partial" /debootstrap/debootstrap --second-stage >&2
  rm -rf "$ROOT.partial/var/cache/apt/archives/"*.deb "$ROOT.partial/var/lib/apt/lists/"*
  ROOT_FINAL="$ROOT"; ROOT="$ROOT.partial"
  site
  fake_cpu
  touch "$ROOT/.edgecv-root-v$VERSION"
  ROOT="$ROOT_FINAL"
  rm -rf "$ROOT"; mv "$ROOT.partial" "$ROOT"
  log "caching as $TAR"
  tar -C "$ROOT" -cf - . | zstd -q -T0 -10 -o "$TAR.tmp" && mv "$TAR.tmp" "$TAR"
fi
[ -x "$ROOT/usr/bin/python3.11" ] || { echo "error: $ROOT has no usr/bin/python3.11 (remove it and rerun)" >&2; exit 3; }
[ "$WITH_EXECUTORCH" = 1 ] && [ ! -d "$ROOT/opt/edgecv/site/executorch" ] && { site; tar -C "$ROOT" -cf - . | zstd -q -T0 -10 -o "$TAR.tmp" && mv "$TAR.tmp" "$TAR"; }
echo "$ROOT"
