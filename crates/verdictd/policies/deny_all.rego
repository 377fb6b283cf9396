# Release nothing.
package policy

default allow = false
