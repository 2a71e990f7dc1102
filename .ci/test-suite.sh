#!/usr/bin/env bash
# The body of `make test`: clean check, export-in-sync check, every notebook under nbdev_test, the tests of the developer
# tools (pytest tools/), then the offline docs check (tools/docs_check.py).
# Fails when notebooks are dirty, when aliret/ disagrees with the notebooks, when any test fails,
# or when fewer notebooks ran than exist (nbdev_test itself exits 0 when nothing matches).
set -euo pipefail
BIN=${BIN:-.venv/bin}
# Every test's temporary files (checkpoints of tiny runs, stores, launchers' rendezvous) in one folder, removed however the
# run ends, so a killed notebook leaks nothing; the free space is printed first and again on failure (a full disk then
# reads as what it is, not as a serialisation error in whichever test wrote last).
export TMPDIR="$(mktemp -d "${TMPDIR:-/tmp}/aliret-test.XXXXXX")"
trap 'rm -rf "$TMPDIR"' EXIT
space() { echo "disk: $(df -Pm "$TMPDIR" | awk 'NR==2 {print $4}') MB free under $TMPDIR"; }
space
digest() { find "$@" -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 md5sum | md5sum; }

before=$(digest nbs); "$BIN/nbdev_clean"
if [ "$before" != "$(digest nbs)" ]; then
  echo "FAIL: notebooks were not clean (nbdev_clean changed them): review 'git diff nbs' and commit the cleaned notebooks."; exit 1; fi
echo "ok: notebooks are clean"

before=$(digest aliret); "$BIN/nbdev_export"
if [ "$before" != "$(digest aliret)" ]; then
  echo "FAIL: aliret/ disagreed with the notebooks (nbdev_export changed it): never hand-edit aliret/, commit the export."; exit 1; fi
echo "ok: aliret/ matches the notebooks"

readme=$(mktemp); cp README.md "$readme"; make -s readme >/dev/null
if ! cmp -s README.md "$readme"; then echo "FAIL: README.md is not index.ipynb's prose: run 'make readme' and commit it."; exit 1; fi
echo "ok: README.md matches nbs/index.ipynb"

total=$(find nbs -name '*.ipynb' -not -name '_*' -not -path '*/.ipynb_checkpoints/*' | wc -l)
log=$(mktemp); status=0
"$BIN/nbdev_test" --timing --do_print 2>&1 | tee "$log" || status=$?
completed=$(grep -c '^- Completed' "$log" || true)
failed=$(sed -n '/^nbdev Tests Failed/,$p' "$log" | grep -c '\.ipynb' || true)
[ "$status" -eq 0 ] || { echo "nbdev_test: $((completed - failed)) passed, $failed failed"; space; exit "$status"; }
if [ "$completed" -ne "$total" ]; then echo "FAIL: only $completed of $total notebooks ran under nbdev_test"; exit 1; fi

# The developer tools (tools/, not part of the package) have plain pytest tests.
"$BIN/python" -m pytest -q -p no:cacheprovider tools/ || { echo "FAIL: the tests of tools/ (pytest tools/)"; exit 1; }
echo "ok: tools/ tests pass"

# The docs site, built offline as nbdev processes it and checked page by page in headless Chromium.
# Required in CI (.ci/run installs Debian's chromium); elsewhere skipped with the install hint when Chromium is absent.
docs=0
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null || [ -n "${ALIRET_CHROMIUM:-}" ] || [ -n "${CI:-}" ]; then
  "$BIN/python" tools/docs_check.py --no-screenshot || docs=$?
  [ "$docs" -eq 0 ] && echo "ok: docs site builds and every page passes in Chromium" || echo "FAIL: docs check (exit $docs): see the table above"
else
  echo "skipped: docs check (no Chromium here: 'sudo apt-get install -y chromium', then 'make docs-check')"
fi
echo "nbdev_test: $((completed - failed)) passed, $failed failed"
exit "$docs"
