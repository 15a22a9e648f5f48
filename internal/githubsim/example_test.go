package githubsim_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/google/go-github/v60/github"

	"github.com/tryd-ci/tryd/internal/githubsim"
)

// A simulator with a repository and a pull request, read back through
// go-github as tryd does.
func Example() {
	dir, err := os.MkdirTemp("", "githubsim-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	sim, err := githubsim.New(githubsim.Options{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer sim.Close()
	if err := sim.Start(ctx, ""); err != nil {
		log.Fatal(err)
	}
	token, _ := sim.AddUser("gopher", githubsim.PermWrite)
	if err := sim.CreateRepo(ctx, "golang/example"); err != nil {
		log.Fatal(err)
	}
	if _, err := sim.Push(ctx, "golang/example", "main", map[string]string{"go.mod": "module example\n"}); err != nil {
		log.Fatal(err)
	}
	n, err := sim.OpenPR(ctx, "golang/example", "gopher", githubsim.PROptions{
		Head: "fix", Title: "Fix it", Files: map[string]string{"fix.go": "package example\n"},
	})
	if err != nil {
		log.Fatal(err)
	}

	gh, _ := github.NewClient(nil).WithAuthToken(token).WithEnterpriseURLs(sim.APIURL(), sim.APIURL())
	pr, _, err := gh.PullRequests.Get(ctx, "golang", "example", n)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pr.GetNumber(), pr.GetTitle(), pr.GetHead().GetRef(), "->", pr.GetBase().GetRef())
	// Output: 1 Fix it fix -> main
}
