module kubeha.lab/build/cni-plugins

go 1.24.0

require github.com/containernetworking/plugins v1.7.1
