# Sourced by the prepare scripts (recipes/lm/fetch_archive.sh, smnist, scifar): the one way a recipe downloads a file.
#
#   fetch_url URL DEST   curl (else wget) into DEST.part, renamed to DEST only when complete. On failure
#                        DEST.part is removed and the status is non-zero; the caller prints its one-line
#                        error (or tries another mirror). curl's/wget's own message stays on stderr.
# The checksums are checked by the callers: SHA-256 and size in recipes/lm/prepare.sh, MD5 in
# fairseq_focus/data/prepare_pixels.py.
fetch_url() {
    local url="$1" dest="$2" rc=0
    mkdir -p "$(dirname "$dest")"
    echo "downloading $url -> $dest"
    if command -v curl >/dev/null; then
        curl -fsSL --retry 3 -o "$dest.part" "$url" || rc=$?
    elif command -v wget >/dev/null; then
        wget -q -O "$dest.part" "$url" || rc=$?
    else
        echo "neither curl nor wget found" >&2
        return 127
    fi
    if [[ "$rc" != 0 ]]; then
        rm -f "$dest.part"
        return "$rc"
    fi
    mv "$dest.part" "$dest"
}
