#!/usr/bin/env bash
# Fails before pip starts when the venv's file system lacks room for a first install: torch's
# CUDA build alone is 5.5 GiB, and pip otherwise stops half-way with "[Errno 28] No space left".
# Usage: scripts/check_disk.sh VENV_DIR NEEDED_GIB
set -euo pipefail
venv=$1 needed_gib=$2
# An existing torch install is upgraded in place: only the first install needs the room.
if compgen -G "$venv/lib/python*/site-packages/torch" >/dev/null; then exit 0; fi
dir=$venv; while [ ! -d "$dir" ]; do dir=$(dirname "$dir"); done
free_kib=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
if [ "$free_kib" -lt $(( needed_gib * 1024 * 1024 )) ]; then
  echo "setup: installing the pinned packages into '$venv' needs about $needed_gib GiB free on its" \
       "file system ($(df -P "$dir" | awk 'NR == 2 {print $6}')); only $(( free_kib / 1024 / 1024 )) GiB is free." \
       "Free some space and run the command again." >&2
  exit 1
fi
