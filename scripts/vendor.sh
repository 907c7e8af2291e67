#!/usr/bin/env bash
# Re-fetch the vendored JavaScript libraries of the screens from the npm registry, check
# each tarball against the integrity hash committed below, and copy their dist files and
# licences into screens/static/assets/vendor/<lib>/. Nothing is fetched at run time: the
# screens load only these copies, so this script is run by an engineer (not by make) when
# a library is updated, and the result is committed.
#
#   scripts/vendor.sh            fetch, verify and copy every library below
#   scripts/vendor.sh --check    fetch and verify, then fail if a committed copy differs
#
# To update a library: change its version and integrity (npm view <pkg>@<version>
# dist.integrity), run this script, look at the diff, and update vendor/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
VENDOR="$ROOT/screens/static/assets/vendor"

die() { echo "vendor: error: $*" >&2; exit 1; }
say() { echo "vendor: $*" >&2; }

# name  version  integrity (sha512 of the npm tarball, as the registry publishes it)
LIBS=(
    "leaflet 1.9.4 sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWyZAxwQixURb+FA74PA=="
    "protomaps-leaflet 5.1.0 sha512-N0YY1Gbw5nZ9n8VUOvwHKm/w3zhTTuaZEeMZl8doHemeM4ujGPp2otI6t4Sgqrz8iM4svx2rpG1Q17rHkOWSaA=="
    "swagger-ui-dist 5.35.0 sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ=="
)

# Which files of each package are shipped (paths inside the tarball's package/ folder).
files_of() {
    case $1 in
        leaflet) echo "dist/leaflet.js dist/leaflet.css dist/images LICENSE" ;;
        protomaps-leaflet) echo "dist/protomaps-leaflet.js LICENSE" ;;
        # /docs (api/docs.py): the files flask-smorest's Swagger UI page loads.
        swagger-ui-dist) echo "swagger-ui.css swagger-ui-bundle.js swagger-ui-standalone-preset.js swagger-ui-bundle.js.LICENSE.txt LICENSE NOTICE" ;;
        *) die "no file list for $1" ;;
    esac
}

check=0
[[ ${1:-} == --check ]] && check=1
command -v npm >/dev/null || die "npm is needed (Debian: apt-get install npm)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
differs=0
for lib in "${LIBS[@]}"; do
    read -r name version integrity <<<"$lib"
    (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
    tarball="$work/$name-$version.tgz"
    [[ -f $tarball ]] || die "npm pack did not write $tarball"
    actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
    [[ $actual == "$integrity" ]] || die "$name@$version: integrity $actual, expected $integrity"
    mkdir -p "$work/$name"
    tar -xzf "$tarball" -C "$work/$name"
    for f in $(files_of "$name"); do
        src="$work/$name/package/$f"
        dest="$VENDOR/$name/$(basename "$f")"
        if ((check)); then
            diff -r -q "$src" "$dest" >/dev/null || { say "$name: $(basename "$f") differs from $name@$version"; differs=1; }
        else
            mkdir -p "$VENDOR/$name"
            rm -rf "$dest"
            cp -R "$src" "$dest"
        fi
    done
    say "$name@$version verified"
done
((check)) && ((differs)) && die "the committed copies differ from the verified packages"
say "done"
