# Sourced by recipes/lm/prepare.sh and recipes/wikitext103/prepare.sh: takes the archive or downloads
# it, then checks its size and SHA-256. Needs die() and ARCHIVE (a local file, or empty to download),
# ARCHIVE_FILE (its file name), URL, DOWNLOAD_DIR, ZIP_VAR (the variable users set for a local file),
# EXPECTED_SIZE, EXPECTED_SHA256, SKIP_CHECKSUM; sets ARCHIVE to the checked file.
if [[ -z "$ARCHIVE" ]]; then
    ARCHIVE="$DOWNLOAD_DIR/$ARCHIVE_FILE"
    if [[ ! -f "$ARCHIVE" ]]; then
        mkdir -p "$DOWNLOAD_DIR"
        echo "downloading $URL -> $ARCHIVE"
        trap 'rm -f "$ARCHIVE.part"' EXIT
        trap 'exit 130' INT TERM
        if command -v curl >/dev/null; then
            curl -fL --retry 3 -o "$ARCHIVE.part" "$URL" || { rm -f "$ARCHIVE.part"; die "download of $URL failed"; }
        elif command -v wget >/dev/null; then
            wget -O "$ARCHIVE.part" "$URL" || { rm -f "$ARCHIVE.part"; die "download of $URL failed"; }
        else
            die "neither curl nor wget found: download $URL yourself and set $ZIP_VAR=/path/to/$ARCHIVE_FILE"
        fi
        mv "$ARCHIVE.part" "$ARCHIVE"
        trap - EXIT
    fi
fi
[[ -f "$ARCHIVE" ]] || die "archive not found: $ARCHIVE (set $ZIP_VAR to the path of $ARCHIVE_FILE)"

# Integrity of the official file. SKIP_CHECKSUM=1 (or EXPECTED_SIZE/EXPECTED_SHA256 of your own
# archive) is the explicit override; zip's own CRC-32 is checked while extracting in any case.
if [[ "$SKIP_CHECKSUM" == 1 ]]; then
    echo "SKIP_CHECKSUM=1: not checking size and SHA-256 of $ARCHIVE"
else
    size="$(wc -c < "$ARCHIVE" | tr -d ' ')"
    [[ "$size" == "$EXPECTED_SIZE" ]] \
        || die "$ARCHIVE has $size bytes, expected $EXPECTED_SIZE (truncated or not the official file; SKIP_CHECKSUM=1 overrides)"
    sha="$(sha256sum "$ARCHIVE" | cut -d' ' -f1)"
    [[ "$sha" == "$EXPECTED_SHA256" ]] \
        || die "$ARCHIVE has SHA-256 $sha, expected $EXPECTED_SHA256 (SKIP_CHECKSUM=1 overrides)"
    echo "checked $ARCHIVE: $size bytes, SHA-256 $sha"
fi
