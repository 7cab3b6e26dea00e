#!/usr/bin/env bash
# Installs headless Chromium and ChromeDriver from Debian's packages (chromium, chromium-driver) for the
# browser test (tests/e2e/test_ui_browser.py, docs/ui-test.md). Idempotent: does nothing when
# /usr/bin/chromium is there. The test drives it with Playwright for Python through
# executable_path=/usr/bin/chromium; `playwright install` (which downloads a browser) is never run.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "installing chromium and chromium-driver from Debian's packages"
if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install chromium chromium-driver" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromium --version
