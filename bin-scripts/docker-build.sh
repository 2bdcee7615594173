#!/usr/bin/env bash
# Builds the kafka-rs Docker image from this checkout, without pulling
# anything from a registry:
#
#   bin-scripts/docker-build.sh [--bin-dir DIR] [--tag IMAGE]
#
# It builds the release binaries (cargo build --release --workspace --bins),
# stages a root filesystem (the binaries with their debug info stripped, the
# shared libraries ldd says they need, a static busybox for the entrypoint
# and health check, docker/ and config/) and runs `docker build` on
# docker/Dockerfile, which starts FROM scratch.
#
#   --bin-dir DIR  package the binaries already in DIR instead of building
#                  (also KAFKA_RS_BIN_DIR); the tests package their debug build
#   --tag IMAGE    the image name (also KAFKA_RS_IMAGE; default kafka-rs:latest),
#                  the name docker-compose.yml runs
#
# Needs docker and ldd on the host, and a busybox: BUSYBOX=/path/to/busybox,
# else the one on the PATH, else (Debian/Ubuntu) the busybox-static package
# fetched with `apt-get download` (no root needed). A dynamically linked
# busybox works too: its libraries are copied like the binaries'.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit "${1:-1}"
}

base_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dir=${KAFKA_RS_BIN_DIR:-}
image=${KAFKA_RS_IMAGE:-kafka-rs:latest}

while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir)
            [ $# -ge 2 ] || usage
            bin_dir=$2
            shift 2
            ;;
        --tag)
            [ $# -ge 2 ] || usage
            image=$2
            shift 2
            ;;
        -h | --help) usage 0 ;;
        *)
            echo "ERROR: unknown argument '$1'" >&2
            usage
            ;;
    esac
done

die() {
    echo "ERROR: $*" >&2
    exit 1
}

command -v docker >/dev/null || die "docker is not installed"
command -v ldd >/dev/null || die "ldd is not installed (it comes with glibc: libc-bin)"

if [ -z "$bin_dir" ]; then
    echo "Building the release binaries..." >&2
    cargo build --release --workspace --bins --manifest-path "$base_dir/Cargo.toml" >&2
    bin_dir=${CARGO_TARGET_DIR:-$base_dir/target}/release
fi
[ -d "$bin_dir" ] || die "no directory $bin_dir"
bin_dir=$(cd "$bin_dir" && pwd)
for daemon in kafka-server-start zookeeper-server-start; do
    [ -x "$bin_dir/$daemon" ] || die "no $daemon in $bin_dir; build the workspace's binaries first"
done

staging=$(mktemp -d "${TMPDIR:-/tmp}/kafka-rs-image.XXXXXX")
trap 'rm -rf "$staging"' EXIT
rootfs=$staging/rootfs

busybox=${BUSYBOX:-$(command -v busybox || true)}
if [ -z "$busybox" ] && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
    echo "No busybox installed; fetching the busybox-static package..." >&2
    if (cd "$staging" && apt-get download busybox-static >&2 2>/dev/null) \
        && dpkg-deb -x "$staging"/busybox-static_*.deb "$staging/busybox-static"; then
        busybox=$staging/busybox-static/bin/busybox
    fi
fi
[ -n "$busybox" ] && [ -x "$busybox" ] \
    || die "no busybox for the image's shell; install one (Debian/Ubuntu: apt-get install busybox-static) or set BUSYBOX=/path/to/busybox"

mkdir -p "$rootfs/opt/kafka/bin" "$rootfs/opt/kafka/config/docker" "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp"

# The workspace's binaries: the executable files directly in the directory
# (cargo puts build scripts, deps and examples in subdirectories).
binaries=()
for path in "$bin_dir"/*; do
    name=$(basename "$path")
    case "$name" in *.so | *.d | *.rlib | *.dylib) continue ;; esac
    if [ -f "$path" ] && [ -x "$path" ]; then
        binaries+=("$path")
    fi
done

# Debug info makes up most of a debug build and much of a release one
# (line tables); symbols stay, so a backtrace still names functions.
strip_tool=$(command -v strip || true)
for path in "${binaries[@]}"; do
    target="$rootfs/opt/kafka/bin/$(basename "$path")"
    if [ -n "$strip_tool" ]; then
        "$strip_tool" --strip-debug -o "$target" "$path"
    else
        cp "$path" "$target"
    fi
done
echo "Packaging $(basename -a "${binaries[@]}" | tr '\n' ' ')from $bin_dir" >&2

cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done

# Every shared library the binaries and busybox load, at the path the
# dynamic linker looks for it (symlinks resolved), plus the dynamic linker.
copy_libraries() {
    local output
    # ldd exits non-zero for a static executable; that needs nothing.
    output=$(ldd "$1" 2>/dev/null) || return 0
    while read -r line; do
        local lib
        case "$line" in
            *"=> not found"*) die "$1 needs a library that is not installed: $line" ;;
            *"=> /"*) lib=${line#*=> } ;;
            /*) lib=$line ;;
            *) continue ;; # linux-vdso and the like live in the kernel
        esac
        lib=${lib%% (0x*}
        if [ ! -e "$rootfs$lib" ]; then
            mkdir -p "$rootfs$(dirname "$lib")"
            cp -L "$lib" "$rootfs$lib"
        fi
    done <<<"$output"
}
for path in "${binaries[@]}" "$busybox"; do
    copy_libraries "$path"
done
# glibc loads its name-service modules at run time (ldd cannot see them);
# since glibc 2.34 files and dns are built in and these are stubs.
libc=$(find "$rootfs" -name 'libc.so.6' -print -quit)
if [ -n "$libc" ]; then
    libc_dir=${libc#"$rootfs"}
    libc_dir=$(dirname "$libc_dir")
    for module in libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
        if [ -e "$libc_dir/$module" ]; then
            cp -L "$libc_dir/$module" "$rootfs$libc_dir/$module"
        fi
    done
fi

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
kafka:x:1000:1000:kafka:/opt/kafka:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
kafka:x:1000:
nogroup:x:65534:
EOF
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"

install -m 0755 "$base_dir/docker/docker-entrypoint" "$base_dir/docker/docker-healthcheck" "$rootfs/opt/kafka/bin/"
cp "$base_dir"/config/*.properties "$rootfs/opt/kafka/config/"
cp "$base_dir"/docker/config/*.properties "$rootfs/opt/kafka/config/docker/"
cp "$base_dir/docker/Dockerfile" "$staging/Dockerfile"

revision=$(git -C "$base_dir" rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "Building image $image..." >&2
docker build --quiet \
    --label "org.opencontainers.image.title=kafka-rs" \
    --label "org.opencontainers.image.revision=$revision" \
    --tag "$image" "$staging" >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$image")
echo "Built $image ($((size / 1000000)) MB)" >&2
