// Command nodeprobe is the workload of the single-node cluster's own tests:
//
//	nodeprobe serve [address]   answers every HTTP request with "nodeprobe <hostname>" (default :8080)
//	nodeprobe whoami            asks the kube-apiserver who its ServiceAccount token says it is,
//	                            through the in-cluster service address, and prints the answer
//	                            with the pod's /etc/resolv.conf
//
// whoami does what an in-cluster client does (client-go's rest.InClusterConfig): the address from
// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, the mounted token as a bearer token, and
// the mounted CA as the only trusted root. It prints one JSON line and exits 1 on any failure.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) < 2 {
		fail("usage: nodeprobe serve [address] | nodeprobe whoami")
	}
	switch os.Args[1] {
	case "serve":
		address := ":8080"
		if len(os.Args) > 2 {
			address = os.Args[2]
		}
		serve(address)
	case "whoami":
		whoami()
	default:
		fail("unknown command " + os.Args[1])
	}
}

func serve(address string) {
	hostname, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "nodeprobe %s\n", hostname)
	})
	server := &http.Server{Addr: address, ReadHeaderTimeout: 10 * time.Second}
	fail(server.ListenAndServe().Error())
}

// whoami posts a SelfSubjectReview, which every authenticated user may create.
func whoami() {
	server := "https://" + net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"))
	token, err := os.ReadFile(serviceAccountDir + "/token")
	if err != nil {
		fail(err.Error())
	}
	caPEM, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		fail(err.Error())
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		fail("no certificate in " + serviceAccountDir + "/ca.crt")
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}},
	}
	body := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	req, err := http.NewRequest(http.MethodPost, server+"/apis/authentication.k8s.io/v1/selfsubjectreviews", bytes.NewReader(body))
	if err != nil {
		fail(err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+string(bytes.TrimSpace(token)))
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		fail(err.Error())
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(res.Body)
	if err != nil {
		fail(err.Error())
	}
	if res.StatusCode != http.StatusCreated {
		fail(fmt.Sprintf("%s: HTTP %d: %s", server, res.StatusCode, answer))
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string   `json:"username"`
				Groups   []string `json:"groups"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal(answer, &review); err != nil {
		fail(err.Error())
	}
	// The kubelet writes it; an empty one means the pod resolves nothing.
	resolvConf, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		fail(err.Error())
	}
	out, _ := json.Marshal(map[string]any{
		"server":     server,
		"username":   review.Status.UserInfo.Username,
		"groups":     review.Status.UserInfo.Groups,
		"resolvConf": string(resolvConf),
	})
	fmt.Println(string(out))
}

func fail(message string) {
	out, _ := json.Marshal(map[string]string{"error": message})
	fmt.Println(string(out))
	os.Exit(1)
}
