package launch

import (
	"bytes"
	"os"
	"os/exec"
)

// RunTestRanks runs world copies of the running test binary (with no test
// selected, so each copy's TestMain does the rank's work) as the ranks of
// a job: env gives each rank's extra environment. It waits for all and
// returns each one's exit error and its stdout and stderr together.
func RunTestRanks(world int, env func(rank int) []string) ([]error, []string, error) {
	cmds := make([]*exec.Cmd, world)
	outs := make([]*bytes.Buffer, world)
	for rank := range world {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), env(rank)...)
		outs[rank] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[rank], outs[rank]
		if err := cmd.Start(); err != nil {
			for _, c := range cmds[:rank] {
				c.Process.Kill()
				c.Wait()
			}
			return nil, nil, err
		}
		cmds[rank] = cmd
	}
	errs := make([]error, world)
	texts := make([]string, world)
	for rank, cmd := range cmds {
		errs[rank] = cmd.Wait()
		texts[rank] = outs[rank].String()
	}
	return errs, texts, nil
}
