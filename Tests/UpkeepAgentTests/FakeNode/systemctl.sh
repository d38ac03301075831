#!/bin/sh
# systemctl stand-in for one fake k3s unit: restart, stop, is-active, show.
DIR='@ROOT@'
# One job at a time, as systemd runs a unit's jobs: a killed agent's restart may still be running
# when the restarted agent asks for its own.
exec 9>"$DIR/systemctl.lock"
flock 9
# Nobody reaps the detached k3s here: a zombie counts as dead.
running() { state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null); [ -n "$state" ] && [ "$state" != Z ]; }
alive() { [ -f "$DIR/pid" ] && running "$(cat "$DIR/pid")"; }
stop() {
  if alive; then
    pid=$(cat "$DIR/pid"); kill "$pid" 2>/dev/null
    i=0; while running "$pid" && [ $i -lt 100 ]; do sleep 0.02; i=$((i+1)); done
    kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$DIR/pid"
}
for last; do :; done
case "$1" in
  restart)
    # When systemd took the job: k3s's own restart-to-healthy time starts here (the install bench).
    printf 'restart %s\n' "$(date +%s.%N)" >> "$DIR/restarts.log"
    stop
    if [ -f "$DIR/restart-fails" ]; then
      echo "Job for $last.service failed because the control process exited with error code." >&2; exit 1
    fi
    setsid "$DIR/bin/k3s" server 9>&- < /dev/null >> "$DIR/k3s.log" 2>&1 &
    echo $! > "$DIR/pid"
    ;;
  stop) stop ;;
  is-active) if alive; then echo active; else echo failed; exit 3; fi ;;
  show)
    if alive; then printf 'ActiveState=active\nSubState=running\nMainPID=%s\n' "$(cat "$DIR/pid")"
    else printf 'ActiveState=failed\nSubState=failed\nMainPID=0\n'; fi ;;
  *) echo "systemctl stand-in: unsupported $1" >&2; exit 1 ;;
esac
