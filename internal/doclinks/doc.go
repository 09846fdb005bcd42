// Package doclinks holds a test, and nothing else: the project's documents
// (README.md, docs/*.md and the READMEs under deploy/) link to each other
// and to headings within each other, and a link that no longer resolves
// sends an admin nowhere. The test reads every Markdown file of the
// repository and checks that each relative link names a file that exists
// and that each #anchor is a heading of the file it points into, with the
// id GitHub gives that heading. It also checks that the code map of
// docs/architecture.md names every package under internal/ and cmd/.
package doclinks
