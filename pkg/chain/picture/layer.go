package picture

// vertex is a box of the drawing (a node of the diagram) or a dummy: the
// point where a long edge crosses a layer it does not end in.
type vertex struct {
	node  int // index into Diagram.Nodes; -1 for a dummy
	layer int
	pos   int // place in its layer's order
	// up and down are the neighbours in the layer before and after.
	up, down []int
	y, h     float64 // centre and height
}

// route is one edge of the diagram as it is drawn: a chain of vertices
// from its left end to its right end, one per layer.
type route struct {
	from, to int   // node indices, upstream and downstream
	chain    []int // vertex indices, left to right
	// reversed: the upstream is on the right (the edge closes a cycle, or
	// goes against given layers); the arrow points left, at chain[0].
	reversed bool
	// flat: both ends in one layer (a self-loop among them); drawn as an
	// arc on the right of the column, the arrow pointing at chain[1].
	flat bool
	// cycle: the edge belongs to a dependency cycle.
	cycle bool
}

// layered is the graph of a diagram spread over layers.
type layered struct {
	d        *Diagram
	vertices []vertex // the diagram's nodes first, at their indices; dummies after
	layers   [][]int  // vertex indices, in order
	routes   []route
	// initialCrossings counts the crossings of the order the diagram gave
	// (the input's order, dummies last), before any reduction.
	initialCrossings int
}

// newLayered assigns layers, turns cycle edges around for the layering,
// adds the dummies of long edges and sets the initial order: the order of
// Diagram.Layers, or of Diagram.Nodes, with each layer's dummies after its
// nodes.
func newLayered(d *Diagram, ids map[string]int) *layered {
	n := len(d.Nodes)
	l := &layered{d: d, vertices: make([]vertex, n)}
	edges := uniqueEdges(d, ids)
	comp := components(n, edges)

	layerOf := make([]int, n)
	if d.Layers != nil {
		next := 0
		for _, layer := range d.Layers {
			if len(layer) == 0 {
				continue // an empty wave draws no empty column
			}
			for _, id := range layer {
				layerOf[ids[id]] = next
			}
			next++
		}
	} else {
		layerOf = longestPathLayers(n, edges)
	}
	depth := 0
	for _, lay := range layerOf {
		depth = max(depth, lay+1)
	}
	l.layers = make([][]int, depth)
	if d.Layers != nil {
		for _, layer := range d.Layers {
			for _, id := range layer {
				i := ids[id]
				l.layers[layerOf[i]] = append(l.layers[layerOf[i]], i)
			}
		}
	} else {
		for i := range n {
			l.layers[layerOf[i]] = append(l.layers[layerOf[i]], i)
		}
	}
	for i := range n {
		l.vertices[i] = vertex{node: i, layer: layerOf[i]}
	}

	for _, e := range edges {
		r := route{from: e[0], to: e[1], cycle: e[0] == e[1] || (comp[e[0]] == comp[e[1]] && comp[e[0]] >= 0)}
		left, right := e[0], e[1]
		switch {
		case layerOf[left] == layerOf[right]:
			r.flat = true
			r.chain = []int{left, right}
			l.routes = append(l.routes, r)
			continue
		case layerOf[left] > layerOf[right]:
			left, right = right, left
			r.reversed = true
		}
		r.chain = append(r.chain, left)
		for lay := layerOf[left] + 1; lay < layerOf[right]; lay++ {
			v := len(l.vertices)
			l.vertices = append(l.vertices, vertex{node: -1, layer: lay})
			l.layers[lay] = append(l.layers[lay], v)
			r.chain = append(r.chain, v)
		}
		r.chain = append(r.chain, right)
		for k := 0; k+1 < len(r.chain); k++ {
			a, b := r.chain[k], r.chain[k+1]
			l.vertices[a].down = append(l.vertices[a].down, b)
			l.vertices[b].up = append(l.vertices[b].up, a)
		}
		l.routes = append(l.routes, r)
	}
	for _, layer := range l.layers {
		for pos, v := range layer {
			l.vertices[v].pos = pos
		}
	}
	l.initialCrossings = l.crossings()
	return l
}

// uniqueEdges returns the diagram's edges as node index pairs, each once,
// in the diagram's order.
func uniqueEdges(d *Diagram, ids map[string]int) [][2]int {
	seen := make(map[[2]int]bool, len(d.Edges))
	edges := make([][2]int, 0, len(d.Edges))
	for _, e := range d.Edges {
		pair := [2]int{ids[e.From], ids[e.To]}
		if !seen[pair] {
			seen[pair] = true
			edges = append(edges, pair)
		}
	}
	return edges
}

// components numbers the strongly connected components of more than one
// node (Tarjan's algorithm, iterative so that a long chain cannot exhaust
// the stack); nodes in no cycle get -1. Self-loops are cycles of their own,
// recognised by the caller.
func components(n int, edges [][2]int) []int {
	out := adjacency(n, edges)
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	comp := make([]int, n)
	for i := range index {
		index[i] = -1
		comp[i] = -1
	}
	var stack []int
	next, ncomp := 0, 0
	type frame struct{ v, edge int }
	for start := range n {
		if index[start] >= 0 {
			continue
		}
		calls := []frame{{start, 0}}
		index[start], low[start] = next, next
		next++
		stack = append(stack, start)
		onStack[start] = true
		for len(calls) > 0 {
			top := &calls[len(calls)-1]
			v := top.v
			if top.edge < len(out[v]) {
				w := out[v][top.edge]
				top.edge++
				if index[w] < 0 {
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					calls = append(calls, frame{w, 0})
				} else if onStack[w] {
					low[v] = min(low[v], index[w])
				}
				continue
			}
			calls = calls[:len(calls)-1]
			if len(calls) > 0 {
				parent := calls[len(calls)-1].v
				low[parent] = min(low[parent], low[v])
			}
			if low[v] != index[v] {
				continue
			}
			size := 0
			for i := len(stack) - 1; ; i-- {
				size++
				if stack[i] == v {
					break
				}
			}
			members := stack[len(stack)-size:]
			stack = stack[:len(stack)-size]
			for _, w := range members {
				onStack[w] = false
				if size > 1 {
					comp[w] = ncomp
				}
			}
			if size > 1 {
				ncomp++
			}
		}
	}
	return comp
}

func adjacency(n int, edges [][2]int) [][]int {
	out := make([][]int, n)
	for _, e := range edges {
		out[e[0]] = append(out[e[0]], e[1])
	}
	return out
}

// longestPathLayers puts every node one layer right of its furthest
// upstream, after a depth-first search (from the nodes in order) has turned
// around the edges that close cycles. For an acyclic graph these are the
// waves of a plan of all its projects.
func longestPathLayers(n int, edges [][2]int) []int {
	out := adjacency(n, edges)
	// Colour 0: not seen, 1: on the search path, 2: done.
	colour := make([]int8, n)
	back := map[[2]int]bool{}
	type frame struct{ v, edge int }
	for start := range n {
		if colour[start] != 0 {
			continue
		}
		colour[start] = 1
		calls := []frame{{start, 0}}
		for len(calls) > 0 {
			top := &calls[len(calls)-1]
			if top.edge == len(out[top.v]) {
				colour[top.v] = 2
				calls = calls[:len(calls)-1]
				continue
			}
			w := out[top.v][top.edge]
			top.edge++
			switch colour[w] {
			case 0:
				colour[w] = 1
				calls = append(calls, frame{w, 0})
			case 1:
				back[[2]int{top.v, w}] = true
			}
		}
	}
	// Kahn's algorithm over the acyclic edges: a node's layer is settled
	// when its last upstream is.
	ups := make([]int, n)
	dag := make([][]int, n)
	for _, e := range edges {
		a, b := e[0], e[1]
		if a == b {
			continue
		}
		if back[e] {
			a, b = b, a
		}
		dag[a] = append(dag[a], b)
		ups[b]++
	}
	layer := make([]int, n)
	queue := make([]int, 0, n)
	for v := range n {
		if ups[v] == 0 {
			queue = append(queue, v)
		}
	}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range dag[v] {
			layer[w] = max(layer[w], layer[v]+1)
			ups[w]--
			if ups[w] == 0 {
				queue = append(queue, w)
			}
		}
	}
	return layer
}
