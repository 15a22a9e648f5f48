package worker

// goPool runs functions on goroutines that stay for the next function
// once done. The worker starts a goroutine per job and per poll; a fresh
// goroutine starts with a small stack and grows it (copying it each
// time) through the HTTP client and JSON decoding, which on trivial jobs
// cost more CPU than keeping a few goroutines with their stacks grown.
//
// Go and close must be called from one goroutine (the worker's Run
// loop); the goroutines end when close has been called and their
// function returned.
type goPool struct {
	tasks   chan func()
	spawned int // goroutines started (read by tests)
}

func newGoPool() *goPool { return &goPool{tasks: make(chan func())} }

// Go runs f on an idle goroutine of the pool, or on a new one when none
// is idle.
func (p *goPool) Go(f func()) {
	select {
	case p.tasks <- f:
	default:
		p.spawned++
		go p.loop(f)
	}
}

func (p *goPool) loop(f func()) {
	for ok := true; ok; f, ok = <-p.tasks {
		f()
	}
}

// close lets the goroutines end (each after its current function).
func (p *goPool) close() { close(p.tasks) }
