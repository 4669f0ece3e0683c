// Package chain finds the dependency graph of container images kept in GitLab projects and rebuilds them in order: graph, GitLab source, trigger engine and webhook receiver.
package chain
