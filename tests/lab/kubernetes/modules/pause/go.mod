module kubeha.lab/build/pause

go 1.24.0
