#!/usr/bin/env bash
# Build the Debian package and check it as a user would receive it:
#   1. cargo deb (installs cargo-deb once with `cargo install --locked`: a few minutes)
#   2. dpkg-deb -c / -e / -f: the files, conffiles and metadata that must be there
#   3. dpkg -x into a scratch root, then the packaged binary checks and tests the packaged
#      configuration (through deploy/policy-repo/check-policies.sh, the policy-repo CI script)
#   4. systemd-analyze verify and security on the packaged unit
# Called by .ci/run; runs on its own too. A tool that cannot be installed is reported loudly
# and the steps that need it are marked NOT CHECKED; a check that runs and fails exits 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO_DEB_VERSION=3.8.0

if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "--- cargo install --locked cargo-deb@$CARGO_DEB_VERSION (once per machine, a few minutes)"
  if ! cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"; then
    echo "!!! NOT CHECKED: cargo-deb could not be installed; the .deb was not built or checked" >&2
    exit 0
  fi
fi

# EGRESSD_DEB_PROFILE=dev (what .ci/run sets) packages the binary `cargo test` already built
# instead of compiling a second, optimised one: the package's layout, metadata and unit are what
# this script checks, and they do not depend on the profile. Users build with the default
# (release), as the README says.
profile=${EGRESSD_DEB_PROFILE:-release}
# With the dev profile, `cargo deb` would build the binary again: `cargo test` unified the features
# of the dev-dependencies into the shared crates, a plain build does not, so every dependency was
# compiled a second time (minutes, and gigabytes of target/). --no-build packages the binary the
# tests ran against.
build=()
if [ "$profile" = dev ] && [ -x target/debug/egressd ]; then
  build=(--no-build)
fi
echo "--- cargo deb --strip --profile $profile ${build[*]}"
# --strip: the release profile keeps line tables for profiling; the package does not need them
# (65 MB binary unstripped, 11 MB stripped).
cargo deb --locked --strip --profile "$profile" "${build[@]}"
deb=$(ls -t target/debian/egressd_*.deb | head -1)
echo "built $deb ($(du -h "$deb" | cut -f1))"

fail() { echo "!!! deb check failed: $*" >&2; exit 1; }

echo "--- dpkg-deb -c: contents"
contents=$(dpkg-deb -c "$deb")
echo "$contents"
for path in ./usr/bin/egressd ./etc/egressd/egressd.yaml ./etc/egressd/policies/_organization.yaml \
            ./etc/egressd/categories/social-media.yaml ./etc/egressd/tests/mandatory.yaml \
            ./usr/share/doc/egressd/README.md; do
  grep -q " $path\$" <<<"$contents" || fail "$path missing from the package"
done
grep -Eq " \./(usr/)?lib/systemd/system/egressd\.service\$" <<<"$contents" \
  || fail "egressd.service missing from the package"
grep -Eq '^-rwxr-xr-x (root/root|0/0) .* \./usr/bin/egressd$' <<<"$contents" \
  || fail "/usr/bin/egressd must be root-owned 0755"

echo "--- dpkg-deb -e: conffiles and maintainer scripts"
ctl=$(mktemp -d)
root=$(mktemp -d)
trap 'rm -rf "$ctl" "$root"' EXIT
dpkg-deb -e "$deb" "$ctl"
cat "$ctl/conffiles"
for f in /etc/egressd/egressd.yaml /etc/egressd/policies/agriculture.yaml /etc/egressd/categories/gambling.yaml; do
  grep -qx "$f" "$ctl/conffiles" || fail "$f is not a conffile (local edits would be overwritten)"
done
grep -q "deb-systemd-helper" "$ctl/postinst" || fail "postinst does not enable the unit"
dpkg-deb -f "$deb" Package Version Architecture Depends

echo "--- dpkg -x into a scratch root; the packaged binary on the packaged configuration"
dpkg -x "$deb" "$root"
"$root/usr/bin/egressd" check --config "$root/etc/egressd/egressd.yaml"
EGRESSD="$root/usr/bin/egressd" deploy/policy-repo/check-policies.sh "$root/etc/egressd/egressd.yaml"

unit=$(find "$root" -name egressd.service | head -1)
if command -v systemd-analyze >/dev/null 2>&1; then
  echo "--- systemd-analyze verify / security (packaged unit)"
  # Exposure must stay below 2.5 (threshold is in tenths). Against the host's units (the scratch root has no sysinit.target), with the binary path
  # pointed into the scratch root so that verify finds it executable.
  sed "s|/usr/bin/egressd|$root/usr/bin/egressd|g" "$unit" >"$ctl/egressd.service"
  systemd-analyze verify --man=no "$ctl/egressd.service"
  systemd-analyze security --offline=yes --threshold=25 "$ctl/egressd.service" | tail -1
else
  echo "!!! NOT CHECKED: systemd-analyze not found (apt-get install systemd); the unit was not verified" >&2
fi
echo "deb check passed"
