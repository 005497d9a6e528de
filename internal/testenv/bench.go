package testenv

import (
	"slices"
	"testing"
	"time"
)

// Median is the median of ds (the mean of the middle two for an even
// count); ds is not reordered.
func Median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ReportSpeedup reports the medians of paired first and second timings as
// the metrics firstMetric and secondMetric (milliseconds) and their ratio as
// "speedup", and logs them with logFormat, which takes the pair count, the
// two medians and the ratio.
func ReportSpeedup(b *testing.B, first, second []time.Duration, firstMetric, secondMetric, logFormat string) {
	b.Helper()
	m1, m2 := Median(first), Median(second)
	b.ReportMetric(float64(m1.Microseconds())/1000, firstMetric)
	b.ReportMetric(float64(m2.Microseconds())/1000, secondMetric)
	b.ReportMetric(float64(m1)/float64(m2), "speedup")
	b.Logf(logFormat, len(first), m1.Round(time.Millisecond), m2.Round(time.Millisecond), float64(m1)/float64(m2))
}
