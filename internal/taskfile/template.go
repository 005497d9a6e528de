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
	"text/template/parse"
	"time"
	"unicode/utf8"

	"github.com/Masterminds/sprig/v3"
)

// templateName names every template so that error positions can be parsed back.
const templateName = "task"

var (
	templateErrRE  = regexp.MustCompile(`^template: ` + templateName + `:(\d+)(?::(\d+))?: (?s)(.*)$`)
	templateLineRE = regexp.MustCompile(`\b` + templateName + `:(\d+)`)
	// loopContextRE is the context text/template gives an error of the check
	// instrument puts at the top of every loop body and template.
	loopContextRE = regexp.MustCompile(`at <` + budgetCheck + ` ("(?:[^"\\]|\\.)*")>: error calling ` + budgetCheck + `: `)
)

// funcs is Sprig's text function map as ACR uses it (b64enc returns "" for nil),
// minus the functions that would read the server's environment or the network,
// plus text/template's own print, printf, println, html, js and urlquery so that
// every function that builds a value goes through the render budget (see
// budget.funcMap).
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
	m["print"] = fmt.Sprint
	m["println"] = fmt.Sprintln
	m["html"] = template.HTMLEscaper
	m["js"] = template.JSEscaper
	m["urlquery"] = template.URLQueryEscaper
	return m
}()

// execute renders text as a Go template with missingkey=zero and strips "<no value>",
// as ACR does, within the default render budget. Template errors become problems
// located in the file.
func execute(ps *problems, text string, data any) (out string, ok bool) {
	return executeWithin(ps, text, data, defaultLimits)
}

func executeWithin(ps *problems, text string, data any, lim limits) (out string, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			ps.add(Pos{}, "", "template: %v", r)
			out, ok = "", false
		}
	}()
	b := &budget{limits: lim}
	t := template.New(templateName).Option("missingkey=zero").Funcs(b.funcMap())
	if _, err := t.Parse(text); err != nil {
		templateProblem(ps, err, text)
		return "", false
	}
	instrument(t)
	w := &limitedBuilder{limit: MaxRenderedSize}
	b.deadline = time.Now().Add(lim.time)
	if err := t.Execute(w, data); err != nil {
		templateProblem(ps, err, text)
		return "", false
	}
	return strings.ReplaceAll(w.String(), "<no value>", ""), true
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

// templateProblem records a template error as a problem at its position. A render
// that went over its budget also names the step the position is in.
func templateProblem(ps *problems, err error, text string) {
	msg := err.Error()
	var p Pos
	if m := templateErrRE.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Column, _ = strconv.Atoi(m[2])
		msg = strings.TrimPrefix(m[3], `executing "`+templateName+`" `)
	}
	field := ""
	if errors.Is(err, errBudget) {
		field = stepAt(text, p.Line)
		if m := loopContextRE.FindStringSubmatchIndex(msg); m != nil {
			loop, _ := strconv.Unquote(msg[m[2]:m[3]])
			msg = msg[:m[0]] + "at <" + loop + ">: " + msg[m[1]:]
		}
	}
	msg = templateLineRE.ReplaceAllString(msg, "line $1")
	ps.add(p, field, "template: %s", msg)
}

// stepAt returns "steps[i]" when line (1-based) of text is inside the i-th item of
// the top-level steps list, else "".
func stepAt(text string, line int) string {
	lines := strings.Split(text, "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	lines = lines[:line]
	start := -1
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "steps:"):
			start = i
		case start >= 0 && l != "" && !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "-") && !strings.HasPrefix(l, "#"):
			start = -1 // the next top-level key
		}
	}
	if start < 0 {
		return ""
	}
	step, indent := -1, -1
	for _, l := range lines[start+1:] {
		item := strings.TrimLeft(l, " ")
		if item != "-" && !strings.HasPrefix(item, "- ") {
			continue
		}
		if in := len(l) - len(item); indent < 0 || in == indent {
			step, indent = step+1, in
		}
	}
	if step < 0 {
		return ""
	}
	return "steps[" + strconv.Itoa(step) + "]"
}

// The render budget. Task files are rendered on the server, so no template may
// take the server's memory or time: each template pass (Render makes up to three,
// RenderDockerfile one per templated field) has
//
//   - a time budget (limits.time), checked at every function call, at the top of
//     every range iteration and at every template invocation, so that a runaway
//     loop or recursion stops;
//   - a value budget (limits.value): what one function call takes (its arguments,
//     counted deeply, a value reached twice counting twice) and what it returns;
//     functions that build a value from a count or multiply their input (repeat,
//     until, indent, replace, join, printf widths, ...) check the size of their
//     result before they build it;
//   - a list budget (limits.list): the elements one call may produce (until,
//     untilStep, seq, split, regexFindAll, ...);
//   - a total (limits.total) of what all the calls of the pass produce, so that a
//     loop cannot accumulate values without bound;
//
// besides the 4 MiB output limit (MaxRenderedSize). Over a budget, the render fails
// with a problem at the position of the expression, naming it and its step.

// errBudget marks a render that went over its budget.
var errBudget = errors.New("over the render budget")

// limits are the budgets of one template pass.
type limits struct {
	time  time.Duration
	value int64
	list  int
	total int64
}

var defaultLimits = limits{
	time:  5 * time.Second,
	value: MaxRenderedSize,
	list:  100_000,
	total: 16 * MaxRenderedSize,
}

// maxDepth bounds how deeply a value may be nested (a value that contains itself
// reaches it).
const maxDepth = 100

// maxPairs bounds the comparisons of uniq, which compares every pair.
const maxPairs = 1 << 23

// budgetCheck is the function instrument calls at the top of every loop body and
// template; its argument names the loop or template in errors.
const budgetCheck = "renderBudget"

// budget is the state of one template pass.
type budget struct {
	limits
	deadline time.Time
	produced int64
}

func (b *budget) fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBudget, fmt.Sprintf(format, args...))
}

// check fails once the pass has run out of time.
func (b *budget) check() error {
	if time.Now().After(b.deadline) {
		return b.fail("rendering took longer than %s", b.limits.time)
	}
	return nil
}

// loop is the budgetCheck function.
func (b *budget) loop(string) (string, error) { return "", b.check() }

// size fails when a result would be larger than the value budget.
func (b *budget) size(n int64) error {
	if n > b.value {
		return b.fail("the result would be %s, more than the %s a template function may produce", bytesText(n), bytesText(b.value))
	}
	return nil
}

// count fails when a call would produce more elements than the list budget.
func (b *budget) count(n uint64) error {
	if n > uint64(b.list) {
		return b.fail("the result would have %d elements, more than the %d a template function may produce", n, b.list)
	}
	return nil
}

func bytesText(n int64) string {
	switch {
	case n >= maxSize:
		return "more than 2^62 bytes"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// maxSize is where sizes saturate, so that a few of them still add up.
const maxSize = 1 << 62

// mulSize returns a*b for a count and a size, saturating at maxSize; a negative
// count is left to the function to refuse, and counts as 0.
func mulSize(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if b > maxSize/a {
		return maxSize
	}
	return a * b
}

// funcMap returns funcs with the functions that build values from their
// arguments replaced by capped versions, and every function guarded by the budget.
func (b *budget) funcMap() template.FuncMap {
	m := make(template.FuncMap, len(funcs)+32)
	for name, fn := range funcs {
		m[name] = fn
	}
	for name, fn := range b.capped() {
		m[name] = fn
	}
	for name, fn := range m {
		m[name] = b.guard(fn)
	}
	m[budgetCheck] = b.loop
	return m
}

// guard wraps fn (of any signature text/template accepts): a call first checks
// the time and the size of the arguments, and its result counts against the
// value budget and the pass's total. A call over the budget panics with the
// error, which text/template reports as the error of the call.
func (b *budget) guard(fn any) any {
	v := reflect.ValueOf(fn)
	typ := v.Type()
	return reflect.MakeFunc(typ, func(args []reflect.Value) []reflect.Value {
		if err := b.check(); err != nil {
			panic(err)
		}
		var in int64
		for _, a := range args {
			n, deep := sizeOf(a, b.value-in)
			if deep {
				panic(b.fail("an argument is nested more than %d levels deep or contains itself", maxDepth))
			}
			if in += n; in > b.value {
				panic(b.fail("the arguments are larger than the %s a template function may take", bytesText(b.value)))
			}
		}
		var out []reflect.Value
		if typ.IsVariadic() {
			out = v.CallSlice(args)
		} else {
			out = v.Call(args)
		}
		if len(out) == 2 && !out[1].IsNil() {
			return out
		}
		// A result that is an argument costs nothing new, but it is measured all
		// the same: set and merge can make a map contain itself.
		n, deep := sizeOf(out[0], b.value)
		if deep {
			panic(b.fail("the result is nested more than %d levels deep or contains itself", maxDepth))
		}
		if err := b.size(n); err != nil {
			panic(err)
		}
		cost := int64(64)
		if !sharesArgument(out[0], args) {
			cost += n + rangeCost(out[0])
		}
		if b.produced += cost; b.produced > b.total {
			panic(b.fail("the template functions produced more than %s in total", bytesText(b.total)))
		}
		return out
	}).Interface()
}

// rangeCost is what a list result costs the pass's total beyond its bytes:
// a template ranges over a list one element per iteration, at about a
// microsecond each, so each element counts 104 bytes more than sizeOf says
// (128 in all for a number): a range of ranges then reaches the total in
// well under a second, whatever the load, instead of racing the time budget.
func rangeCost(v reflect.Value) int64 {
	if v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
		return 0
	}
	return 104 * int64(v.Len())
}

// sharesArgument reports whether r is one of the map, slice or pointer arguments
// (set, merge, default, ... return one), which costs nothing new.
func sharesArgument(r reflect.Value, args []reflect.Value) bool {
	r = indirectInterface(r)
	switch r.Kind() {
	case reflect.Map, reflect.Slice, reflect.Pointer:
	default:
		return false
	}
	for _, a := range args {
		if a.Kind() == reflect.Slice && a.Type().Elem().Kind() == reflect.Interface { // variadic
			for i := range a.Len() {
				if same(r, indirectInterface(a.Index(i))) {
					return true
				}
			}
		}
		if same(r, indirectInterface(a)) {
			return true
		}
	}
	return false
}

func same(a, b reflect.Value) bool {
	if a.Kind() != b.Kind() || a.Type() != b.Type() {
		return false
	}
	if a.Kind() == reflect.Slice && a.Len() != b.Len() {
		return false
	}
	return a.Pointer() == b.Pointer()
}

func indirectInterface(v reflect.Value) reflect.Value {
	for v.IsValid() && v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	return v
}

// sizeOf estimates the bytes printing or copying v produces: a value reached twice
// counts twice, numbers count as the longest they print. It stops counting past
// limit, and reports deep when v is nested more than maxDepth levels (a value that
// contains itself is).
func sizeOf(v reflect.Value, limit int64) (n int64, deep bool) {
	var walk func(v reflect.Value, depth int)
	walk = func(v reflect.Value, depth int) {
		if n > limit || deep {
			return
		}
		if depth > maxDepth {
			deep = true
			return
		}
		switch v.Kind() {
		case reflect.String:
			n += 16 + int64(v.Len())
		case reflect.Interface, reflect.Pointer:
			if v.IsNil() {
				n += 8
				return
			}
			walk(v.Elem(), depth+1)
		case reflect.Slice, reflect.Array:
			n += 24
			switch v.Type().Elem().Kind() {
			case reflect.Uint8:
				n += int64(v.Len())
			case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
				reflect.Float32, reflect.Float64:
				n += 24 * int64(v.Len())
			default:
				for i := 0; i < v.Len() && n <= limit && !deep; i++ {
					walk(v.Index(i), depth+1)
				}
			}
		case reflect.Map:
			n += 48
			for it := v.MapRange(); it.Next() && n <= limit && !deep; {
				walk(it.Key(), depth+1)
				walk(it.Value(), depth+1)
			}
		case reflect.Struct:
			n += int64(v.Type().Size())
		default:
			n += 24
		}
	}
	walk(v, 0)
	return n, deep
}

// instrument puts a budget check at the top of every template and of every range
// body, so that no loop or recursion runs past the time budget.
func instrument(t *template.Template) {
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		root := tt.Tree.Root
		instrumentList(tt.Tree, root)
		root.Nodes = append([]parse.Node{checkNode(tt.Tree, root.Pos, "template "+strconv.Quote(tt.Name()))}, root.Nodes...)
	}
}

func instrumentList(tree *parse.Tree, l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.IfNode:
			instrumentList(tree, n.List)
			instrumentList(tree, n.ElseList)
		case *parse.WithNode:
			instrumentList(tree, n.List)
			instrumentList(tree, n.ElseList)
		case *parse.RangeNode:
			instrumentList(tree, n.List)
			instrumentList(tree, n.ElseList)
			if n.List != nil {
				n.List.Nodes = append([]parse.Node{checkNode(tree, n.Pos, "range "+n.Pipe.String())}, n.List.Nodes...)
			}
		}
	}
}

// checkNode is the action {{renderBudget "what"}} at pos; it prints nothing.
func checkNode(tree *parse.Tree, pos parse.Pos, what string) *parse.ActionNode {
	id := parse.NewIdentifier(budgetCheck).SetTree(tree).SetPos(pos)
	arg := &parse.StringNode{NodeType: parse.NodeString, Pos: pos, Quoted: strconv.Quote(what), Text: what}
	cmd := &parse.CommandNode{NodeType: parse.NodeCommand, Pos: pos, Args: []parse.Node{id, arg}}
	return &parse.ActionNode{NodeType: parse.NodeAction, Pos: pos, Pipe: &parse.PipeNode{NodeType: parse.NodePipe, Pos: pos, Cmds: []*parse.CommandNode{cmd}}}
}

// capped returns the functions that build a value whose size depends on an
// argument (a count, a width) or multiplies their input, checking the size first.
// Each behaves as Sprig's (or text/template's) function otherwise.
func (b *budget) capped() map[string]any {
	orig := func(name string) reflect.Value { return reflect.ValueOf(funcs[name]) }
	m := map[string]any{
		"repeat": func(count int, s string) (string, error) {
			if err := b.size(mulSize(int64(count), int64(len(s)))); err != nil {
				return "", err
			}
			return strings.Repeat(s, count), nil
		},
		"until": func(count int) ([]int, error) {
			if count < 0 {
				return b.untilStep(0, count, -1)
			}
			return b.untilStep(0, count, 1)
		},
		"untilStep": b.untilStep,
		"seq":       b.seq,
		"randBytes": func(count int) (string, error) {
			if err := b.size(mulSize(int64(count), 2)); err != nil {
				return "", err
			}
			return funcs["randBytes"].(func(int) (string, error))(count)
		},
		"indent": func(spaces int, s string) (string, error) {
			if err := b.size(int64(len(s)) + mulSize(int64(spaces), int64(strings.Count(s, "\n")+1))); err != nil {
				return "", err
			}
			return funcs["indent"].(func(int, string) string)(spaces, s), nil
		},
		"nindent": func(spaces int, s string) (string, error) {
			if err := b.size(1 + int64(len(s)) + mulSize(int64(spaces), int64(strings.Count(s, "\n")+1))); err != nil {
				return "", err
			}
			return funcs["nindent"].(func(int, string) string)(spaces, s), nil
		},
		// Wrapping breaks a line at most once per byte of the input.
		"wrap": func(l int, s string) (string, error) {
			if err := b.size(2*int64(len(s)) + 1); err != nil {
				return "", err
			}
			return funcs["wrap"].(func(int, string) string)(l, s), nil
		},
		"wrapWith": func(l int, sep, s string) (string, error) {
			if err := b.size(int64(len(s)) + mulSize(int64(len(s))+1, int64(len(sep)))); err != nil {
				return "", err
			}
			return funcs["wrapWith"].(func(int, string, string) string)(l, sep, s), nil
		},
		"replace": func(old, repl, s string) (string, error) {
			if err := b.size(int64(len(s)) + mulSize(int64(strings.Count(s, old)), int64(len(repl)))); err != nil {
				return "", err
			}
			return strings.ReplaceAll(s, old, repl), nil
		},
		"join": func(sep string, v any) (string, error) {
			n := 1
			if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array {
				n = rv.Len()
			}
			size, _ := sizeOf(reflect.ValueOf(v), b.value)
			if err := b.size(size + mulSize(int64(n), int64(len(sep)))); err != nil {
				return "", err
			}
			return funcs["join"].(func(string, any) string)(sep, v), nil
		},
		"split": func(sep, s string) (map[string]string, error) {
			if err := b.count(pieces(s, sep)); err != nil {
				return nil, err
			}
			return funcs["split"].(func(string, string) map[string]string)(sep, s), nil
		},
		"splitList": func(sep, s string) ([]string, error) {
			if err := b.count(pieces(s, sep)); err != nil {
				return nil, err
			}
			return strings.Split(s, sep), nil
		},
		"splitn": func(sep string, n int, s string) (map[string]string, error) {
			if n < 0 || n > b.list {
				if err := b.count(pieces(s, sep)); err != nil {
					return nil, err
				}
			}
			return funcs["splitn"].(func(string, int, string) map[string]string)(sep, n, s), nil
		},
		"printf": func(format string, args ...any) (string, error) {
			if err := b.size(printfSize(format, args, b.value)); err != nil {
				return "", err
			}
			return fmt.Sprintf(format, args...), nil
		},
		"uniq":     b.quadratic(orig("uniq")),
		"mustUniq": b.quadratic(orig("mustUniq")),
	}
	for _, name := range []string{"randAlphaNum", "randAlpha", "randAscii", "randNumeric"} {
		f := funcs[name].(func(int) string)
		m[name] = func(count int) (string, error) {
			if err := b.size(int64(count)); err != nil {
				return "", err
			}
			return f(count), nil
		}
	}
	for _, name := range []string{"regexReplaceAll", "mustRegexReplaceAll", "regexReplaceAllLiteral", "mustRegexReplaceAllLiteral"} {
		f := orig(name)
		literal := strings.HasSuffix(name, "Literal")
		m[name] = func(regex, s, repl string) (string, error) {
			if re, err := regexp.Compile(regex); err == nil {
				if err := b.replaceSize(re, s, repl, literal); err != nil {
					return "", err
				}
			}
			return callString(f, regex, s, repl)
		}
	}
	for _, name := range []string{"regexFindAll", "mustRegexFindAll", "regexSplit", "mustRegexSplit"} {
		f := orig(name)
		m[name] = func(regex, s string, n int) ([]string, error) {
			if re, err := regexp.Compile(regex); err == nil && (n < 0 || n > b.list) {
				if err := b.count(uint64(len(re.FindAllStringIndex(s, b.list+1)))); err != nil {
					return nil, err
				}
			}
			out := f.Call([]reflect.Value{reflect.ValueOf(regex), reflect.ValueOf(s), reflect.ValueOf(n)})
			if len(out) == 2 && !out[1].IsNil() {
				return nil, out[1].Interface().(error)
			}
			return out[0].Interface().([]string), nil
		}
	}
	return m
}

// pieces is the number of strings strings.Split(s, sep) returns.
func pieces(s, sep string) uint64 {
	if sep == "" {
		return uint64(utf8.RuneCountInString(s))
	}
	return uint64(strings.Count(s, sep)) + 1
}

// callString calls a Sprig function returning string or (string, error).
func callString(f reflect.Value, args ...string) (string, error) {
	in := make([]reflect.Value, len(args))
	for i, a := range args {
		in[i] = reflect.ValueOf(a)
	}
	out := f.Call(in)
	if len(out) == 2 && !out[1].IsNil() {
		return "", out[1].Interface().(error)
	}
	return out[0].String(), nil
}

// replaceSize checks the result of replacing every match of re in s with repl:
// each match becomes repl, whose $references each expand to at most the match.
func (b *budget) replaceSize(re *regexp.Regexp, s, repl string, literal bool) error {
	matches := re.FindAllStringIndex(s, b.list+1)
	if err := b.count(uint64(len(matches))); err != nil {
		return err
	}
	refs := int64(0)
	if !literal {
		refs = int64(strings.Count(repl, "$"))
	}
	size := int64(len(s))
	for _, m := range matches {
		size = min(size+int64(len(repl))+mulSize(refs, int64(m[1]-m[0])), maxSize)
	}
	return b.size(size)
}

// quadratic caps a function that compares every pair of a list's elements.
func (b *budget) quadratic(f reflect.Value) func(list any) ([]any, error) {
	return func(list any) ([]any, error) {
		if v := reflect.ValueOf(list); v.Kind() == reflect.Slice || v.Kind() == reflect.Array {
			if n := int64(v.Len()); n*n > maxPairs {
				return nil, b.fail("the list has %d elements, more than the %d it may have here", n, isqrt(maxPairs))
			}
		}
		out := f.Call([]reflect.Value{reflect.ValueOf(list)})
		if len(out) == 2 && !out[1].IsNil() {
			return nil, out[1].Interface().(error)
		}
		l, _ := out[0].Interface().([]any)
		return l, nil
	}
}

func isqrt(n int64) int64 {
	r := int64(0)
	for (r+1)*(r+1) <= n {
		r++
	}
	return r
}

// untilStep is Sprig's untilStep (start, start+step, ... up to stop, excluded)
// that counts its elements first, and whose loop cannot overflow.
func (b *budget) untilStep(start, stop, step int) ([]int, error) {
	var n uint64
	switch {
	case stop > start && step > 0:
		n = (uint64(stop)-uint64(start)-1)/uint64(step) + 1
	case stop < start && step < 0:
		n = (uint64(start)-uint64(stop)-1)/(uint64(-(step+1))+1) + 1
	}
	if err := b.count(n); err != nil {
		return nil, err
	}
	v := make([]int, 0, n)
	for i, x := uint64(0), start; i < n; i, x = i+1, x+step {
		v = append(v, x)
	}
	return v, nil
}

// seq is Sprig's seq (bash's seq: "seq 3", "seq 2 4", "seq 0 2 10") over untilStep.
func (b *budget) seq(params ...int) (string, error) {
	var start, stop, step int
	switch len(params) {
	case 1:
		start, stop, step = 1, params[0], 1
		if stop < start {
			step = -1
		}
		stop += step
	case 2:
		start, stop, step = params[0], params[1], 1
		if stop < start {
			step = -1
		}
		stop += step
	case 3:
		start, step, stop = params[0], params[1], params[2]
		inc := 1
		if stop < start {
			if step > 0 {
				return "", nil
			}
			inc = -1
		}
		stop += inc
	default:
		return "", nil
	}
	v, err := b.untilStep(start, stop, step)
	if err != nil {
		return "", err
	}
	var s strings.Builder
	for i, x := range v {
		if i > 0 {
			s.WriteByte(' ')
		}
		s.WriteString(strconv.Itoa(x))
	}
	return s.String(), nil
}

// printfSize bounds what fmt.Sprintf(format, args...) produces: each verb prints
// at most the widest width or precision in the format (fmt refuses more than
// 1e6; '*' takes one from the arguments) and the largest argument (an argument
// index may print one many times).
func printfSize(format string, args []any, limit int64) int64 {
	verbs, width := int64(0), int64(0)
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		verbs++
		for i+1 < len(format) && strings.IndexByte("+-# 0123456789.*[]", format[i+1]) >= 0 {
			i++
			switch c := format[i]; {
			case c == '*':
				width = 1e6
			case c >= '0' && c <= '9':
				j := i
				for j+1 < len(format) && format[j+1] >= '0' && format[j+1] <= '9' {
					j++
				}
				w, err := strconv.ParseInt(format[i:j+1], 10, 64)
				if err != nil || w > 1e6 {
					w = 1e6
				}
				width, i = max(width, w), j
			}
		}
	}
	var widest int64
	for _, a := range args {
		n, _ := sizeOf(reflect.ValueOf(a), limit)
		widest = max(widest, n)
	}
	return int64(len(format)) + mulSize(verbs, width+widest)
}
