# Sourced by recipes/lm/prepare.sh and recipes/wikitext103/prepare.sh: takes the archive or downloads
# it, then checks its size and SHA-256. Needs die() and ARCHIVE (a local file, or empty to download),
# ARCHIVE_FILE (its file name), URL, DOWNLOAD_DIR, ZIP_VAR (the variable users set for a local file),
# EXPECTED_SIZE, EXPECTED_SHA256, SKIP_CHECKSUM; sets ARCHIVE to the checked file.
# shellcheck source=../common/download.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common/download.sh"
if [[ -z "$ARCHIVE" ]]; then
    ARCHIVE="$DOWNLOAD_DIR/$ARCHIVE_FILE"
    if [[ ! -f "$ARCHIVE" ]]; then
        trap 'rm -f "$ARCHIVE.part"' EXIT
        trap 'exit 130' INT TERM
        fetch_url "$URL" "$ARCHIVE" || die "download of $URL failed (or set $ZIP_VAR=/path/to/$ARCHIVE_FILE)"
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
