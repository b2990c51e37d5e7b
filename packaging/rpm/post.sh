# rollguard %post: the system user and folders; enable on first install.
systemd-sysusers rollguard.conf || :
systemd-tmpfiles --create rollguard.conf || :
if [ "$1" -eq 1 ]; then
  systemctl --no-reload preset rollguard.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
fi
