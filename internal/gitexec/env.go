package gitexec

import (
	"encoding/base64"
	"strconv"
)

// Config is one git configuration setting.
type Config struct {
	Key, Value string
}

// ConfigEnv returns the environment variables (GIT_CONFIG_COUNT,
// GIT_CONFIG_KEY_n, GIT_CONFIG_VALUE_n) that give git the settings cs as
// if from a configuration file. Secrets such as HTTP headers go this way:
// other users can read a process's command line, not its environment.
// Git reads one such list per environment, so all settings of a command
// must come from one call.
func ConfigEnv(cs ...Config) []string {
	if len(cs) == 0 {
		return nil
	}
	env := []string{"GIT_CONFIG_COUNT=" + strconv.Itoa(len(cs))}
	for i, c := range cs {
		n := strconv.Itoa(i)
		env = append(env, "GIT_CONFIG_KEY_"+n+"="+c.Key, "GIT_CONFIG_VALUE_"+n+"="+c.Value)
	}
	return env
}

// BasicAuth is the setting that makes git send HTTP basic authentication
// with user and password on every request (http.extraHeader).
func BasicAuth(user, password string) Config {
	return Config{Key: "http.extraHeader", Value: "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}
}
