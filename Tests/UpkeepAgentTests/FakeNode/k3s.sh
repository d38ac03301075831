#!/bin/sh
case "$1" in
  --version|-v) printf 'k3s version %s (0123abcd)\ngo version go1.22.5\n' '@VERSION@'; exit 0 ;;
  server|agent) exec python3 '@ROOT@/fake-node.py' '@VERSION@' '@ROOT@' ;;
  etcd-snapshot)
    [ "$2" = save ] || { echo "fake k3s: etcd-snapshot $2 unsupported" >&2; exit 1; }
    name=on-demand; dir='@ROOT@/k3s/server/db/snapshots'; shift 2
    while [ $# -gt 0 ]; do case "$1" in --name) name=$2; shift 2 ;; --dir) dir=$2; shift 2 ;; *) shift ;; esac; done
    [ -d '@ROOT@/k3s/server/db/etcd' ] || { echo 'etcd datastore disabled' >&2; exit 1; }
    printf 'etcd snapshot by %s\n' '@VERSION@' > "$dir/$name-node-1-$(date +%s)"; exit 0 ;;
  *) echo "fake k3s: unknown command $1" >&2; exit 1 ;;
esac
exit 0
