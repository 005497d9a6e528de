// Package engine executes acr-task.yaml runs on a Docker Engine: it renders
// the task file, plans the step DAG and runs each build, cmd and push step
// as real engine operations, streaming the runner's familiar log lines.
package engine
