// Wrapper module: builds github.com/containernetworking/plugins from the Go module proxy (harness/host/build.py).
// Its go line is upstream's, so GODEBUG defaults match a release build.
module seamcheck.invalid/host/cni-plugins

go 1.20

require github.com/containernetworking/plugins v1.5.1

require (
	github.com/alexflint/go-filemutex v1.3.0 // indirect
	github.com/containernetworking/cni v1.1.2 // indirect
	github.com/coreos/go-iptables v0.7.0 // indirect
	github.com/mattn/go-shellwords v1.0.12 // indirect
	github.com/networkplumbing/go-nft v0.4.0 // indirect
	github.com/safchain/ethtool v0.4.0 // indirect
	github.com/vishvananda/netlink v1.2.1-beta.2 // indirect
	github.com/vishvananda/netns v0.0.4 // indirect
	golang.org/x/sys v0.21.0 // indirect
)
