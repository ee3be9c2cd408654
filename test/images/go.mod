// Small static programs packed as container images for the single-node cluster's tests
// (test/harness/oci-image.ts): the pod sandbox and a probe. Standard library only.
module kube-audit-operator/test/images

go 1.24
