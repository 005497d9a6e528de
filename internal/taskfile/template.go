package taskfile

import (
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
)

// templateName names every template so that error positions can be parsed back.
const templateName = "task"

var (
	templateErrRE  = regexp.MustCompile(`^template: ` + templateName + `:(\d+)(?::(\d+))?: (?s)(.*)$`)
	templateLineRE = regexp.MustCompile(`\b` + templateName + `:(\d+)`)
)

// funcs is Sprig's text function map as ACR uses it (b64enc returns "" for nil),
// minus the functions that would read the server's environment or the network.
var funcs = func() template.FuncMap {
	m := sprig.TxtFuncMap()
	m["b64enc"] = func(v any) string {
		if v == nil {
			return ""
		}
		return base64.StdEncoding.EncodeToString([]byte(reflect.ValueOf(v).String()))
	}
	for _, name := range []string{"env", "expandenv"} {
		m[name] = func(string) (string, error) {
			return "", fmt.Errorf("%s is disabled: task templates cannot read the server's environment (use --set values or secrets)", name)
		}
	}
	m["getHostByName"] = func(string) (string, error) {
		return "", errors.New("getHostByName is disabled: task templates cannot use the network")
	}
	return m
}()

// execute renders text as a Go template with missingkey=zero and strips "<no value>",
// as ACR does. Template errors become problems located in the file.
func execute(ps *problems, text string, data any) (out string, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			ps.add(Pos{}, "", "template: %v", r)
			out, ok = "", false
		}
	}()
	t := template.New(templateName).Option("missingkey=zero").Funcs(funcs)
	if _, err := t.Parse(text); err != nil {
		templateProblem(ps, err)
		return "", false
	}
	b := &limitedBuilder{limit: MaxRenderedSize}
	if err := t.Execute(b, data); err != nil {
		templateProblem(ps, err)
		return "", false
	}
	return strings.ReplaceAll(b.String(), "<no value>", ""), true
}

// MaxRenderedSize bounds the output of a template render (task files are rendered on
// the server).
const MaxRenderedSize = 4 << 20

var errTooLarge = errors.New("the rendered task file is larger than 4 MiB")

// limitedBuilder is a strings.Builder that fails once it would exceed limit bytes.
type limitedBuilder struct {
	strings.Builder
	limit int
}

func (b *limitedBuilder) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, errTooLarge
	}
	return b.Builder.Write(p)
}

func templateProblem(ps *problems, err error) {
	msg := err.Error()
	var p Pos
	if m := templateErrRE.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Column, _ = strconv.Atoi(m[2])
		msg = strings.TrimPrefix(m[3], `executing "`+templateName+`" `)
	}
	msg = templateLineRE.ReplaceAllString(msg, "line $1")
	ps.add(p, "", "template: %s", msg)
}
