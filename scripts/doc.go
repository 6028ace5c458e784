// Package scripts holds the shell scripts the Makefile and CI run. It has
// no Go code of its own: its tests run the scripts against a fake system
// (stubbed dpkg, apt-get and update-alternatives) to check what they would
// install and change.
package scripts
