#!/bin/sh
# The quick start: a Consul agent, three collectors and prome-shard, on
# loopback. Run from the repository root after make prome-shard consul.
set -eu
q=examples/prome-shard/quickstart
mkdir -p /tmp/promshard-quickstart/shards
bin/consul agent -dev -bind 127.0.0.1 >/tmp/promshard-quickstart/consul.log 2>&1 &
for i in 1 2 3; do
  prometheus --config.file=$q/collector-$i.yml --web.listen-address=127.0.0.1:909$i --web.enable-lifecycle \
    --storage.tsdb.path=/tmp/promshard-quickstart/data-$i >/tmp/promshard-quickstart/collector-$i.log 2>&1 &
done
trap 'kill $(jobs -p)' EXIT INT TERM
sleep 3 # until Consul answers
bin/prome-shard --config.file=$q/prome-shard.yml check config
bin/prome-shard --config.file=$q/prome-shard.yml # http://127.0.0.1:9099/ ; Ctrl-C stops everything
