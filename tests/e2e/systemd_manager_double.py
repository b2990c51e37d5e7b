"""A stand-in for systemd's D-Bus Manager, for the systemd action's tests.

systemd cannot run as PID 1 on a test machine, so the tests start their own dbus-daemon
and this program on it: it owns org.freedesktop.systemd1 and answers RestartUnit,
StartUnit, StopUnit and ReloadUnit (signature "ss" -> "o") as systemd does — a job path
at once, and the job's end later as the Manager's JobRemoved signal ("uoss": id, job,
unit, result). What it does depends on the unit's name:

  ok.service       JobRemoved "done" after 300ms
  broken.service   JobRemoved "failed" after 300ms (the unit did not come back)
  hang.service     no JobRemoved (the job never ends)
  other names      org.freedesktop.systemd1.NoSuchUnit, as systemd answers

Every call is appended to the log file as "METHOD UNIT MODE". Usage:
  systemd_manager_double.py BUS_ADDRESS LOG_FILE
"""

import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

MANAGER = "org.freedesktop.systemd1.Manager"
PATH = "/org/freedesktop/systemd1"
OUTCOMES = {"ok.service": "done", "broken.service": "failed", "hang.service": None}


class NoSuchUnit(dbus.DBusException):
    _dbus_error_name = "org.freedesktop.systemd1.NoSuchUnit"


class Manager(dbus.service.Object):
    def __init__(self, bus, log_path):
        super().__init__(bus, PATH)
        self.log_path = log_path
        self.next_job = 1

    def _job(self, method, unit, mode):
        with open(self.log_path, "a") as log:
            log.write(f"{method} {unit} {mode}\n")
        if unit not in OUTCOMES:
            raise NoSuchUnit(f"Unit {unit} not found.")
        job_id = self.next_job
        self.next_job += 1
        job = dbus.ObjectPath(f"{PATH}/job/{job_id}")
        outcome = OUTCOMES[unit]
        if outcome is not None:
            GLib.timeout_add(300, self._finish, job_id, job, unit, outcome)
        return job

    def _finish(self, job_id, job, unit, outcome):
        self.JobRemoved(dbus.UInt32(job_id), job, unit, outcome)
        return False

    @dbus.service.signal(MANAGER, signature="uoss")
    def JobRemoved(self, job_id, job, unit, result):
        pass

    @dbus.service.method(MANAGER, in_signature="ss", out_signature="o")
    def RestartUnit(self, unit, mode):
        return self._job("RestartUnit", unit, mode)

    @dbus.service.method(MANAGER, in_signature="ss", out_signature="o")
    def StartUnit(self, unit, mode):
        return self._job("StartUnit", unit, mode)

    @dbus.service.method(MANAGER, in_signature="ss", out_signature="o")
    def StopUnit(self, unit, mode):
        return self._job("StopUnit", unit, mode)

    @dbus.service.method(MANAGER, in_signature="ss", out_signature="o")
    def ReloadUnit(self, unit, mode):
        return self._job("ReloadUnit", unit, mode)


def main():
    address, log_path = sys.argv[1], sys.argv[2]
    DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(address)
    name = dbus.service.BusName("org.freedesktop.systemd1", bus)
    manager = Manager(bus, log_path)
    with open(log_path, "a") as log:
        log.write("ready\n")
    GLib.MainLoop().run()
    del manager, name


if __name__ == "__main__":
    main()
