package worker_test

import "os"

func readAll(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}
