#!/usr/bin/env bash
# Install the real protocol peers the integration tests run against (Debian 12). Installs only what is
# missing, so it is quick on a machine that already has them. Needs root for apt-get.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v baresip >/dev/null || need+=(baresip-core)
command -v kamailio >/dev/null || need+=(kamailio)  # the SIP edge proxy of tests/integration/test_sip_interop.py
compgen -G "/usr/lib/*/kamailio/modules/tls.so" >/dev/null || need+=(kamailio-tls-modules)
command -v linphonec >/dev/null || need+=(linphone-cli)  # a caller of the interop matrix (tests/integration/linphone.py)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v rsync >/dev/null || need+=(rsync)
command -v ssh >/dev/null || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs npm)
command -v curl >/dev/null || need+=(curl)  # tests/integration/test_ha_pair.py talks to the engines inside their namespaces
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: missing ${need[*]} and not root; install them with apt-get" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
(cd "$here" && npm ci --no-audit --no-fund --silent)
