#!/usr/bin/env bash
# Builds the hostbeat .deb and .rpm into target/packages/.
#
#   packaging/build.sh                # hostbeat_0.1.0-1_amd64.deb, hostbeat-0.1.0-1.x86_64.rpm
#   packaging/build.sh --revision 2   # 0.1.0-2 of both (the version itself comes from Cargo.toml)
#   packaging/build.sh --install-tools  # only install the two cargo tools when missing
#
# Installs cargo-deb and cargo-generate-rpm (pinned, --locked) when missing.
# The package metadata is in Cargo.toml: [package.metadata.deb] and
# [package.metadata.generate-rpm].
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

revision=1
tools_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --revision) revision="${2:?--revision needs a value}"; shift 2 ;;
        --revision=*) revision="${1#*=}"; shift ;;
        --install-tools) tools_only=1; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument: $1" >&2; exit 64 ;;
    esac
done
case "$revision" in
    ''|*[!0-9A-Za-z.+~]*) echo "build.sh: bad revision: $revision" >&2; exit 64 ;;
esac

if ! cargo deb --version >/dev/null 2>&1; then
    echo "== cargo install cargo-deb $CARGO_DEB_VERSION"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi
if ! cargo generate-rpm --version >/dev/null 2>&1; then
    echo "== cargo install cargo-generate-rpm $CARGO_GENERATE_RPM_VERSION"
    cargo install cargo-generate-rpm --version "$CARGO_GENERATE_RPM_VERSION" --locked
fi
if [ "$tools_only" = 1 ]; then
    echo "$(cargo deb --version) | $(cargo generate-rpm --version)"
    exit 0
fi

echo "== cargo build --release --locked"
cargo build --release --locked

out=target/packages
mkdir -p "$out" target/packaging
# cargo-deb compresses man pages itself; cargo-generate-rpm does not.
gzip -9 -n -c packaging/hostbeat.1 > target/packaging/hostbeat.1.gz

echo "== cargo deb (revision $revision)"
cargo deb --no-build --deb-revision "$revision" --output "$out/"

echo "== cargo generate-rpm (release $revision)"
cargo generate-rpm --set-metadata "release = \"$revision\"" --output "$out/"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
deb=$(ls "$out"/hostbeat_"$version"-"$revision"_*.deb)
rpm=$(ls "$out"/hostbeat-"$version"-"$revision".*.rpm)
echo "== packages"
for f in "$deb" "$rpm"; do
    printf '%10d bytes  %s\n' "$(stat -c %s "$f")" "$f"
done
