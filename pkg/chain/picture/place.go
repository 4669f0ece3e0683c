package picture

// Vertical placement. The order of each layer is fixed; what remains is
// where each vertex sits in its column. Each round moves every layer, one
// after the other, as close as the order and the spacing allow to where its
// neighbours in the layer just placed pull it: the mean of their centres,
// weighted so that the links between dummies (the straight runs of long
// edges) pull hardest, as dot does (weights 1, 2, 8). The best position of
// one layer under "in this order, at least this far apart" is a weighted
// isotonic regression, solved exactly in linear time by pooling adjacent
// violators.

// Spacing between the centres of neighbours in a layer: half of each
// height plus a gap that depends on what they are.
const (
	gapBoxBox     = 14.0
	gapBoxDummy   = 12.0
	gapDummyDummy = 7.0
)

// placementRounds of a down and an up sweep: enough for the positions to
// settle on the graphs of a chain (each round costs O(vertices+edges)).
const placementRounds = 8

func (l *layered) separation(a, b int) float64 {
	va, vb := &l.vertices[a], &l.vertices[b]
	gap := gapBoxBox
	switch {
	case va.node < 0 && vb.node < 0:
		gap = gapDummyDummy
	case va.node < 0 || vb.node < 0:
		gap = gapBoxDummy
	}
	return (va.h+vb.h)/2 + gap
}

// place sets every vertex's y (its centre); the topmost edge of the drawing
// is at 0.
func (l *layered) place(boxHeight float64) {
	for i := range l.vertices {
		if l.vertices[i].node >= 0 {
			l.vertices[i].h = boxHeight
		}
	}
	for _, order := range l.layers {
		y := 0.0
		for i, v := range order {
			if i > 0 {
				y += l.separation(order[i-1], v)
			}
			l.vertices[v].y = y
		}
	}
	up := func(v *vertex) []int { return v.up }
	down := func(v *vertex) []int { return v.down }
	both := func(v *vertex) []int { return append(append([]int(nil), v.up...), v.down...) }
	for range placementRounds {
		for lay := 1; lay < len(l.layers); lay++ {
			l.fitLayer(lay, up)
		}
		for lay := len(l.layers) - 2; lay >= 0; lay-- {
			l.fitLayer(lay, down)
		}
	}
	for lay := range l.layers {
		l.fitLayer(lay, both)
	}
	top := 0.0
	for i, v := range l.vertices {
		if i == 0 || v.y-v.h/2 < top {
			top = v.y - v.h/2
		}
	}
	for i := range l.vertices {
		l.vertices[i].y -= top
	}
}

// fitLayer moves the vertices of layer lay to the positions closest (in
// weighted least squares) to where their neighbours pull them, keeping
// their order and spacing.
func (l *layered) fitLayer(lay int, neighbours func(*vertex) []int) {
	order := l.layers[lay]
	if len(order) == 0 {
		return
	}
	// With offset[i] the least distance from the first vertex's centre to
	// the i-th's, z = y - offset must only be non-decreasing: isotonic
	// regression of target - offset.
	type block struct {
		weight, mean float64
		count        int
	}
	blocks := make([]block, 0, len(order))
	offset := 0.0
	for i, v := range order {
		if i > 0 {
			offset += l.separation(order[i-1], v)
		}
		vx := &l.vertices[v]
		target, weight := vx.y, 0.001 // without neighbours: stay, but give way
		sum, total := 0.0, 0.0
		for _, u := range neighbours(vx) {
			ux := &l.vertices[u]
			w := 1.0
			switch {
			case ux.node < 0 && vx.node < 0:
				w = 8
			case ux.node < 0 || vx.node < 0:
				w = 2
			}
			sum += w * ux.y
			total += w
		}
		if total > 0 {
			target, weight = sum/total, total
		}
		b := block{weight: weight, mean: target - offset, count: 1}
		for len(blocks) > 0 && blocks[len(blocks)-1].mean > b.mean {
			prev := blocks[len(blocks)-1]
			blocks = blocks[:len(blocks)-1]
			w := prev.weight + b.weight
			b = block{weight: w, mean: (prev.mean*prev.weight + b.mean*b.weight) / w, count: prev.count + b.count}
		}
		blocks = append(blocks, b)
	}
	i := 0
	offset = 0
	for _, b := range blocks {
		for range b.count {
			if i > 0 {
				offset += l.separation(order[i-1], order[i])
			}
			l.vertices[order[i]].y = b.mean + offset
			i++
		}
	}
}
