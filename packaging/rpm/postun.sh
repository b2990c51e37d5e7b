# rollguard %postun: on upgrade restart onto the new binary; /var/lib/rollguard is kept.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -ge 1 ]; then
    systemctl try-restart rollguard.service >/dev/null 2>&1 || :
  fi
fi
