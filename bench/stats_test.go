package bench

import (
	"math"
	"slices"
	"testing"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{7}, 7},
		{[]float64{3, 1}, 2},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{1, 1, 1, 100}, 1},
		{[]float64{-2, 10, 0}, 0},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.in)
		if got := Median(in); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if !slices.Equal(in, tt.in) {
			t.Errorf("Median(%v) reordered its input to %v", tt.in, in)
		}
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100 down to 1
	}
	twoHundred := make([]float64, 200)
	for i := range twoHundred {
		twoHundred[i] = float64(i + 1)
	}
	tests := []struct {
		in   []float64
		p    float64
		want float64
	}{
		{nil, 99, 0},
		{[]float64{42}, 99, 42},
		{[]float64{42}, 1, 42},
		{hundred, 99, 99}, // nearest rank: ceil(0.99*100) = 99th value
		{hundred, 50, 50}, // ceil(50) = 50th
		{hundred, 100, 100},
		{hundred, 0.5, 1},     // rank 1 at least
		{twoHundred, 99, 198}, // ceil(198) = 198th
		{[]float64{1, 2, 3, 4, 1000}, 99, 1000},
		{[]float64{1, 2, 3, 4, 1000}, 80, 4},
	}
	for _, tt := range tests {
		if got := Percentile(tt.in, tt.p); got != tt.want {
			t.Errorf("Percentile(%d values, %v) = %v, want %v", len(tt.in), tt.p, got, tt.want)
		}
	}
	if got := Max([]float64{3, 9, 1}); got != 9 {
		t.Errorf("Max = %v, want 9", got)
	}
	if got := Max(nil); got != 0 || math.IsNaN(got) {
		t.Errorf("Max(nil) = %v, want 0", got)
	}
}

func TestThousandsAndNumber(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 10000: "10,000", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	for v, want := range map[float64]string{0: "0", 0.1234: "0.123", 3.14159: "3.14", 42.42: "42.4", 1523.6: "1,524"} {
		if got := number(v); got != want {
			t.Errorf("number(%v) = %q, want %q", v, got, want)
		}
	}
}
