#!/bin/sh
# Builds a local stand-in for the official debian:bookworm-slim image on a
# machine that cannot reach a container registry, from Debian's own packages:
# debootstrap --variant=minbase bookworm from the mirror apt already uses
# here, trimmed the way the official slim image is (no docs, man pages or
# locales; apt's lists and caches cleaned), then `docker import`ed under the
# same name, so docker/Dockerfile builds unchanged.
#
# Usage (as root):  docker/base-image.sh [IMAGE]      IMAGE: debian:bookworm-slim
# Environment:      GRACED_BASE_MIRROR=URL  use this mirror instead of apt's
#                   GRACED_BASE_SUITE=NAME  default bookworm
#
# Idempotent: if IMAGE already exists it says so and does nothing.
# Exits non-zero with one "base-image: ..." line naming the cause on failure.
set -eu

IMAGE=${1:-debian:bookworm-slim}
SUITE=${GRACED_BASE_SUITE:-bookworm}

say() { printf 'base-image: %s\n' "$*"; }
die() { printf 'base-image: error: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "docker not found (apt-get install -y docker.io)"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running, and may this user use it?)"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
	say "$IMAGE already exists ($(docker image inspect -f '{{.Id}}' "$IMAGE")): nothing to do"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "$IMAGE is missing and building it needs root (debootstrap): run this as root"

if ! command -v debootstrap >/dev/null 2>&1; then
	say "installing debootstrap with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		debootstrap debian-archive-keyring >/dev/null ||
		{ apt-get update -q >/dev/null &&
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			debootstrap debian-archive-keyring >/dev/null; } ||
		die "apt-get install debootstrap failed"
fi

# The mirror apt uses on this machine: the first "deb" source for the plain
# suite, in one-line (sources.list) or deb822 (*.sources) format; likewise
# the security mirror for SUITE-security.
find_uri() { # $1: suite
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		# deb [options] URI suite components...
		sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
			awk -v s="$1" '$1 == "deb" && $3 == s { print $2; exit }'
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		# Stanzas separated by blank lines; fields Types, URIs, Suites, Enabled.
		awk -v s="$1" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && enabled != "no")
					for (i = 1; i <= ns; i++) if (suites[i] == s) { print uris; found = 1; exit }
				types = ""; uris = ""; ns = 0; enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{ sub(/[ \t]+$/, "") }
			tolower($1) == "types:"   { types = $0; sub(/^[^:]*:[ \t]*/, "", types) }
			tolower($1) == "uris:"    { uris = $2 }
			tolower($1) == "enabled:" { enabled = tolower($2) }
			tolower($1) == "suites:"  { ns = 0; for (i = 2; i <= NF; i++) suites[++ns] = $i }
			END { if (!found) flush() }
		' "$f"
	done
}
MIRROR=${GRACED_BASE_MIRROR:-$(find_uri "$SUITE" | head -n 1)}
[ -n "$MIRROR" ] || die "no 'deb' source for suite $SUITE in /etc/apt/sources.list or /etc/apt/sources.list.d/ (set GRACED_BASE_MIRROR=URL)"
SECURITY=$(find_uri "$SUITE-security" | head -n 1)
[ -n "$SECURITY" ] || SECURITY=http://deb.debian.org/debian-security

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEYRING" ] || die "$KEYRING missing (apt-get install -y debian-archive-keyring)"

ROOT=$(mktemp -d /var/tmp/graced-base.XXXXXX) || die "mktemp failed"
LOG=$ROOT.log

# Whatever happens, leave nothing mounted and nothing behind. Never rm -rf
# while something is still mounted inside the tree (a bind-mounted /dev or
# /proc would be deleted through it).
cleanup() {
	rc=$?
	if command -v findmnt >/dev/null 2>&1; then
		findmnt -rn -o TARGET | grep "^$ROOT/" | sort -r |
			while read -r m; do umount -l "$m" 2>/dev/null || true; done
		if findmnt -rn -o TARGET | grep -q "^$ROOT/"; then
			printf 'base-image: error: mounts left under %s, not removing it\n' "$ROOT" >&2
			exit 1
		fi
	fi
	rm -rf --one-file-system "$ROOT"
	[ "$rc" = 0 ] && rm -f "$LOG"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "$IMAGE is missing: building it from $MIRROR ($SUITE, minbase) in $ROOT"
say "debootstrap log: $LOG"
start=$(date +%s)
if ! debootstrap --variant=minbase --keyring="$KEYRING" "$SUITE" "$ROOT" "$MIRROR" >"$LOG" 2>&1; then
	tail -n 20 "$LOG" >&2
	[ -r "$ROOT/debootstrap/debootstrap.log" ] && tail -n 20 "$ROOT/debootstrap/debootstrap.log" >&2
	die "debootstrap failed (log above and in $LOG)"
fi
say "debootstrap done in $(( $(date +%s) - start )) s"

say "configuring apt sources and trimming the tree like the official slim image"
rm -f "$ROOT/etc/apt/sources.list"
cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# The official images' minimizing configuration (debuerreotype).
cat >"$ROOT/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$ROOT/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' >"$ROOT/etc/apt/apt.conf.d/docker-gzip-indexes"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$ROOT/etc/apt/apt.conf.d/docker-autoremove-suggests"
mkdir -p "$ROOT/etc/dpkg/dpkg.cfg.d"
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"

# What the excludes would have kept out, and what a container gets from
# Docker anyway (/dev, hostname, resolv.conf), plus apt's lists and caches.
find "$ROOT/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
for d in groff info linda lintian/overrides locale man; do
	[ -d "$ROOT/usr/share/$d" ] && find "$ROOT/usr/share/$d" -mindepth 1 -delete
done
rm -rf --one-file-system "$ROOT/var/lib/apt/lists/"* "$ROOT/var/cache/apt/"*.bin \
	"$ROOT/var/cache/apt/archives/"*.deb "$ROOT/var/cache/apt/archives/partial/"* \
	"$ROOT/var/log/"*.log "$ROOT/var/log/apt/"* "$ROOT/debootstrap" \
	"$ROOT/dev/"* "$ROOT/proc/"* "$ROOT/sys/"* "$ROOT/tmp/"* "$ROOT/run/"*
mkdir -p "$ROOT/var/lib/apt/lists/partial"
: >"$ROOT/etc/resolv.conf"
: >"$ROOT/etc/hostname"
: >"$ROOT/etc/machine-id"

say "importing $(du -sh "$ROOT" | cut -f1) as $IMAGE"
id=$(tar --numeric-owner -C "$ROOT" -c . |
	docker import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["bash"]' \
		--message "debootstrap --variant=minbase $SUITE $MIRROR (docker/base-image.sh)" \
		- "$IMAGE") || die "docker import failed"
docker run --rm "$IMAGE" sh -c '. /etc/os-release && echo "$PRETTY_NAME"' >/dev/null ||
	die "the imported $IMAGE does not run"
say "built $IMAGE ($id) in $(( $(date +%s) - start )) s"
