#!/bin/sh
# build-deb.sh ROOT VERSION ARCH OUT: turns a tree staged by
# `make install DESTDIR=ROOT PREFIX=/usr` into the Debian package OUT, with
# dpkg-deb alone (no debhelper, no network). Run by `make deb` from the top
# of the source tree.
set -eu

root=$1 version=$2 arch=$3 out=$4
here=packaging/debian
example_dir=/usr/share/narwhal/example

test -x "$root/usr/bin/narwhal" || { echo "$0: $root is not staged" >&2; exit 1; }

# Debian installs man pages compressed, and stripped binaries.
find "$root/usr/share/man" -type f -name '*.[1-9]' -exec gzip -9nf {} +
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$root/usr/bin/narwhal" "$root"/usr/lib/narwhal/narwhal_worker/*.so

install -d "$root/lib/systemd/system"
install -m 644 packaging/narwhal.service packaging/narwhal@.service \
    packaging/narwhal.socket packaging/narwhal@.socket \
    "$root/lib/systemd/system/"

# The example app (conf/example/app.py), where the installed config points,
# so that the service starts and answers as installed.
install -d "$root$example_dir"
install -m 644 conf/example/app.py "$root$example_dir/app.py"

# /etc/narwhal/narwhal.ini: the annotated conf/narwhal.ini, serving the
# example app. Each key below replaces the key's line in [narwhal] (or its
# commented-out example line, ";key = ..."), or is added at the end of it.
install -d "$root/etc/narwhal"
awk -v settings="app=app:application chdir=$example_dir ready_path=/health/ready" '
BEGIN {
	n = split(settings, kv, " ")
	for (i = 1; i <= n; i++) {
		eq = index(kv[i], "=")
		key[i] = substr(kv[i], 1, eq - 1)
		value[key[i]] = substr(kv[i], eq + 1)
	}
}
FNR == 1 { in_main = 0 }
/^[ \t]*\[/ {
	if (in_main && FNR != NR)
		finish()
	in_main = $0 ~ /^[ \t]*\[narwhal\][ \t]*$/
	if (in_main)
		found = 1
	if (FNR == NR)
		next
	print
	next
}
in_main {
	line = $0
	commented = sub(/^[;#]/, "", line)
	split(line, parts, "=")
	k = parts[1]
	gsub(/[ \t]/, "", k)
	if (index(line, "=") && (k in value)) {
		if (FNR == NR) {
			if (!commented)
				live[k] = 1
		} else if (!done[k] && (!commented || !live[k])) {
			print k " = " value[k]
			done[k] = 1
			next
		}
	}
}
FNR == NR { next }
{ print }
function finish(    i) {
	for (i = 1; i <= n; i++)
		if (!done[key[i]]) {
			print key[i] " = " value[key[i]]
			done[key[i]] = 1
		}
}
END {
	if (in_main)
		finish()
	if (!found)
		exit 1
}' conf/narwhal.ini conf/narwhal.ini > "$root/etc/narwhal/narwhal.ini" ||
	{ echo "$0: conf/narwhal.ini has no [narwhal] section" >&2; exit 1; }
chmod 644 "$root/etc/narwhal/narwhal.ini"

doc="$root/usr/share/doc/narwhal"
install -d "$doc/examples"
install -m 644 "$here/copyright" "$doc/copyright"
for f in README.md packaging/README-systemd.md; do
	if [ -f "$f" ]; then
		install -m 644 "$f" "$doc/"
	fi
done
install -m 644 conf/*.ini packaging/narwhal-hardened.service \
    packaging/narwhal.service "$doc/examples/"
printf 'narwhal (%s) unstable; urgency=medium\n\n  * Built from the narwhal source tree.\n\n -- narwhal developers <narwhal@localhost>  %s\n' \
    "$version" "$(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")" |
    gzip -9n > "$doc/changelog.Debian.gz"

install -d -m 755 "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" \
    -e "s/@INSTALLED_SIZE@/$size/" "$here/control.in" > "$root/DEBIAN/control"
install -m 644 "$here/conffiles" "$root/DEBIAN/conffiles"
install -m 755 "$here/postinst" "$here/prerm" "$here/postrm" "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o \
    -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' md5sum) \
    > "$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/md5sums"

find "$root" -type d -exec chmod 755 {} +
dpkg-deb --root-owner-group -Zxz --build "$root" "$out"
