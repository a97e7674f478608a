module github.com/promshard/promshard

go 1.26.7

require (
	github.com/cespare/xxhash/v2 v2.3.0
	github.com/prometheus/common v0.73.1
	github.com/prometheus/prometheus v0.316.0
	github.com/serialx/hashring v0.0.0-20200727003509-22c0c7ab6b1b
)

require (
	github.com/prometheus/client_model v0.6.3 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
