#!/usr/bin/env bash
# Optional system packages: a system FFmpeg (enables the torchcodec backend and the
# ffmpeg-CLI benchmark baseline) and Debian's tuxpaint-stamps-default (recorded
# sounds + cut-out pictures for the real-asset world). Everything works without them;
# the features that need them say so and fall back.
set -u
want=()
command -v ffmpeg >/dev/null || want+=(ffmpeg)
[ -d /usr/share/tuxpaint/stamps ] || want+=(tuxpaint-stamps-default)
[ ${#want[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "[setup] apt-get not available: skipping ${want[*]}"; exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && { command -v sudo >/dev/null && SUDO="sudo -n" || { echo "[setup] not root: skipping ${want[*]}"; exit 1; }; }
echo "[setup] installing system packages: ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q "${want[@]}" >/tmp/avssl-apt.log 2>&1 || {
  $SUDO apt-get update -q >/tmp/avssl-apt.log 2>&1 && $SUDO apt-get install -y -q "${want[@]}" >>/tmp/avssl-apt.log 2>&1; } || {
  echo "[setup] apt-get failed (log: /tmp/avssl-apt.log)"; exit 1; }
