package api

import "time"

// Task is a task of a registry, shaped like ACR's task resource.
type Task struct {
	Name        string           `json:"name"`
	Registry    string           `json:"registry"`
	Status      string           `json:"status"`
	Platform    Platform         `json:"platform"`
	Timeout     int              `json:"timeout"`
	Step        TaskStep         `json:"step"`
	Identity    *Identity        `json:"identity"`
	Trigger     Triggers         `json:"trigger"`
	Credentials []TaskCredential `json:"credentials"`
	CreatedAt   time.Time        `json:"creationDate"`
	UpdatedAt   time.Time        `json:"lastUpdatedDate"`
}

// Platform is the OS and architecture runs execute on.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
}

// Task step types.
const (
	StepTypeFile   = "FileTask"
	StepTypeDocker = "Docker"
)

// TaskStep is what a task runs.
type TaskStep struct {
	Type string `json:"type"`
	// ContextPath is the git context (url#ref:folder), a server folder, or
	// "" (none).
	ContextPath           string            `json:"contextPath"`
	TaskFilePath          string            `json:"taskFilePath,omitempty"`
	DockerFilePath        string            `json:"dockerFilePath,omitempty"`
	ImageNames            []string          `json:"imageNames,omitempty"`
	Arguments             map[string]string `json:"arguments,omitempty"`
	Values                map[string]string `json:"values,omitempty"`
	Target                string            `json:"target,omitempty"`
	IsPushEnabled         bool              `json:"isPushEnabled"`
	HasContextAccessToken bool              `json:"hasContextAccessToken"`
	// BaseImageDependencies are the base images the task's last
	// successful build used: what base-image triggers watch.
	BaseImageDependencies []BaseImageDependency `json:"baseImageDependencies"`
	// BaseImageDependenciesStatus says why the list is empty, if it is.
	BaseImageDependenciesStatus string `json:"baseImageDependenciesStatus,omitempty"`
}

// BaseImageDependency is one tracked base image.
type BaseImageDependency struct {
	Type       string    `json:"type"` // RunTime or BuildTime
	Image      string    `json:"image"`
	Registry   string    `json:"registry"`
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	Digest     string    `json:"digest"`
	RunID      string    `json:"runId"`
	UpdatedAt  time.Time `json:"lastUpdated"`
	// CurrentDigest is what the tag points to now (or at the last poll,
	// for an external registry).
	CurrentDigest string `json:"currentDigest,omitempty"`
	// Watched: a change of this base triggers the task (per the trigger
	// type, Runtime or All).
	Watched bool `json:"watched"`
}

// Identity is a task's system-assigned identity.
type Identity struct {
	Type        string `json:"type"`
	PrincipalID string `json:"principalId"`
}

// Triggers are a task's triggers.
type Triggers struct {
	SourceTrigger    *SourceTrigger    `json:"sourceTrigger,omitempty"`
	BaseImageTrigger *BaseImageTrigger `json:"baseImageTrigger"`
	TimerTriggers    []TimerTrigger    `json:"timerTriggers"`
}

// SourceTrigger runs the task on commits to its git context's branch.
type SourceTrigger struct {
	Status        string `json:"status"`
	RepositoryURL string `json:"repositoryUrl"`
	Branch        string `json:"branch"`
	// WebhookPath is where a git host may POST push events, on the control
	// API (HMAC-signed with the task's webhook secret).
	WebhookPath string `json:"webhookPath,omitempty"`
	// LastCommit is the newest commit the trigger has seen.
	LastCommit string `json:"lastCommit,omitempty"`
	// LastError is the last polling error, if the last poll failed.
	LastError string `json:"lastError,omitempty"`
}

// Webhook is a task's webhook: where a git host POSTs push events and the
// HMAC secret it signs them with.
type Webhook struct {
	Path   string `json:"path"`
	Secret string `json:"secret"`
}

// BaseImageTrigger runs the task when a tracked base image changes.
type BaseImageTrigger struct {
	Status string `json:"status"`
	Type   string `json:"baseImageTriggerType"`
}

// TimerTrigger runs the task on a cron schedule (UTC).
type TimerTrigger struct {
	Name     string     `json:"name"`
	Schedule string     `json:"schedule"`
	Status   string     `json:"status"`
	NextRun  *time.Time `json:"nextRunTime,omitempty"`
	LastRun  *time.Time `json:"lastRunTime,omitempty"`
}

// TaskCredential is a registry login of a task. Username and Password show
// vault URIs as given; plain-text passwords are shown as "***".
type TaskCredential struct {
	LoginServer string `json:"loginServer"`
	Username    string `json:"username,omitempty"`
	Password    string `json:"password,omitempty"`
	UseIdentity string `json:"identity,omitempty"`
}

// CreateTaskRequest is the body of POST .../tasks.
type CreateTaskRequest struct {
	Name    string `json:"name"`
	Context string `json:"context,omitempty"`
	File    string `json:"file,omitempty"`
	// FileContent is the task file itself, for tasks without a context.
	FileContent          []byte            `json:"fileContent,omitempty"`
	GitAccessToken       string            `json:"gitAccessToken,omitempty"`
	Images               []string          `json:"images,omitempty"`
	Arguments            map[string]string `json:"arguments,omitempty"`
	Values               map[string]string `json:"values,omitempty"`
	Target               string            `json:"target,omitempty"`
	NoPush               bool              `json:"noPush,omitempty"`
	Status               string            `json:"status,omitempty"`
	Platform             string            `json:"platform,omitempty"`
	TimeoutSeconds       int               `json:"timeout,omitempty"`
	AssignIdentity       bool              `json:"assignIdentity,omitempty"`
	CommitTrigger        *bool             `json:"commitTriggerEnabled,omitempty"`
	BaseImageTrigger     *bool             `json:"baseImageTriggerEnabled,omitempty"`
	BaseImageTriggerType string            `json:"baseImageTriggerType,omitempty"`
	Schedules            []string          `json:"schedules,omitempty"`
}

// UpdateTaskRequest is the body of PATCH .../tasks/{name}; absent fields
// are unchanged. Values and Arguments are merged into the task's.
type UpdateTaskRequest struct {
	Context              *string            `json:"context,omitempty"`
	File                 *string            `json:"file,omitempty"`
	FileContent          []byte             `json:"fileContent,omitempty"`
	GitAccessToken       *string            `json:"gitAccessToken,omitempty"`
	Images               *[]string          `json:"images,omitempty"`
	Arguments            *map[string]string `json:"arguments,omitempty"`
	Values               *map[string]string `json:"values,omitempty"`
	Target               *string            `json:"target,omitempty"`
	NoPush               *bool              `json:"noPush,omitempty"`
	Status               *string            `json:"status,omitempty"`
	Platform             *string            `json:"platform,omitempty"`
	TimeoutSeconds       *int               `json:"timeout,omitempty"`
	AssignIdentity       bool               `json:"assignIdentity,omitempty"`
	CommitTrigger        *bool              `json:"commitTriggerEnabled,omitempty"`
	BaseImageTrigger     *bool              `json:"baseImageTriggerEnabled,omitempty"`
	BaseImageTriggerType *string            `json:"baseImageTriggerType,omitempty"`
	Schedules            []string           `json:"schedules,omitempty"`
}

// CredentialRequest adds or updates a task credential.
type CredentialRequest struct {
	LoginServer string `json:"loginServer"`
	Username    string `json:"username,omitempty"`
	Password    string `json:"password,omitempty"`
	UseIdentity string `json:"useIdentity,omitempty"`
}

// TimerRequest adds or updates a timer.
type TimerRequest struct {
	Name     string  `json:"name"`
	Schedule *string `json:"schedule,omitempty"`
	Enabled  *bool   `json:"enabled,omitempty"`
}

// RunTaskRequest is the body of POST .../tasks/{name}/runs.
type RunTaskRequest struct {
	Values map[string]string `json:"values,omitempty"`
}

// QuickRunRequest is the "request" part of POST .../runs (multipart, with
// an optional "context" part: a gzipped tar of the build context).
type QuickRunRequest struct {
	// Build makes a one-off Docker build (gantry build) instead of a task
	// file run (gantry run).
	Build          bool              `json:"build,omitempty"`
	File           string            `json:"file,omitempty"`
	FileContent    []byte            `json:"fileContent,omitempty"`
	Values         map[string]string `json:"values,omitempty"`
	Images         []string          `json:"images,omitempty"`
	Arguments      map[string]string `json:"arguments,omitempty"`
	Target         string            `json:"target,omitempty"`
	NoPush         bool              `json:"noPush,omitempty"`
	TimeoutSeconds int               `json:"timeout,omitempty"`
}

// Run is one run of a task or a quick run.
type Run struct {
	RunID      string     `json:"runId"`
	Registry   string     `json:"registry"`
	Task       string     `json:"task"`
	RunType    string     `json:"runType"`
	Status     string     `json:"status"`
	Trigger    string     `json:"trigger"`
	Platform   string     `json:"platform"`
	Commit     string     `json:"commit,omitempty"`
	Branch     string     `json:"branch,omitempty"`
	CreateTime time.Time  `json:"createTime"`
	StartTime  *time.Time `json:"startTime,omitempty"`
	FinishTime *time.Time `json:"finishTime,omitempty"`
	// Duration is HH:MM:SS, so far for a running run.
	Duration     string      `json:"duration"`
	Error        string      `json:"runErrorMessage,omitempty"`
	Cause        RunCause    `json:"cause"`
	OutputImages []RunImage  `json:"outputImages"`
	BaseImages   []RunImage  `json:"baseImages"`
	Steps        []RunStep   `json:"steps"`
	Chain        []ChainLink `json:"chain,omitempty"`
}

// RunCause is what started a run.
type RunCause struct {
	Commit      *CommitCause `json:"commit,omitempty"`
	ImageUpdate *ImageCause  `json:"imageUpdate,omitempty"`
	Timer       *TimerCause  `json:"timer,omitempty"`
	Note        string       `json:"note,omitempty"`
}

// CommitCause is a commit on a watched branch.
type CommitCause struct {
	Repository string `json:"repository"`
	Branch     string `json:"branch"`
	Commit     string `json:"commit"`
	Previous   string `json:"previous,omitempty"`
	Source     string `json:"source,omitempty"`
}

// ImageCause is a tracked base image that moved.
type ImageCause struct {
	Image     string `json:"image"`
	OldDigest string `json:"oldDigest,omitempty"`
	NewDigest string `json:"newDigest"`
	Registry  string `json:"registry,omitempty"`
	RunID     string `json:"runId,omitempty"`
	PushedBy  string `json:"pushedBy,omitempty"`
}

// TimerCause is a timer firing.
type TimerCause struct {
	Name     string    `json:"name"`
	Schedule string    `json:"schedule"`
	Time     time.Time `json:"scheduledTime"`
}

// RunImage is an image a run pushed or built from.
type RunImage struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest,omitempty"`
	// Type is RunTime or BuildTime for base images.
	Type string `json:"type,omitempty"`
	Step string `json:"step,omitempty"`
}

// RunStep is one step's outcome.
type RunStep struct {
	ID         string     `json:"id"`
	Status     string     `json:"status"`
	StartTime  *time.Time `json:"startTime,omitempty"`
	FinishTime *time.Time `json:"finishTime,omitempty"`
	ExitCode   int        `json:"exitCode"`
	Error      string     `json:"error,omitempty"`
}

// ChainLink is one run in the chain of causes that led to a run, origin
// first.
type ChainLink struct {
	Registry string `json:"registry"`
	RunID    string `json:"runId"`
	Task     string `json:"task"`
	Trigger  string `json:"trigger"`
	Status   string `json:"status"`
	// Description says what happened, e.g. "Commit abc123 on main of
	// /srv/git/base-image-node" or "pushed node:15-alpine@sha256:…".
	Description string `json:"description"`
}
