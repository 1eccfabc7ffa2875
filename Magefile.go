//go:build mage

// Build targets for the Grafana plugin, in the shape mage expects: exported functions of
// package main returning error, behind the `mage` build tag. Mage is never required: each target
// only runs the commands the README gives, and the file imports nothing but the standard library
// (mage cannot be installed on this project's machines).
//
// There is deliberately no func main: mage generates its own and would reject a second one. Check
// the file with `go vet -tags mage Magefile.go` (type checks without linking); `go build` refuses
// a main package without main.
//
//	mage build     cargo build --release (gpx_kindling), npm run build, copy the executable into dist
//	mage frontend  npm ci and npm run build
//	mage test      scripts/test.sh
//	mage clean     frontend/dist and the plugin's release artifacts
package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

const (
	backendPackage = "kindling-plugin-backend"
	backendBinary  = "gpx_kindling"
	frontendDir    = "frontend"
	distDir        = "frontend/dist"
)

// Build compiles the backend in release mode, builds the frontend into frontend/dist, then copies
// the backend there under the name Grafana looks for. The copy comes last because the frontend
// build empties dist/.
func Build() error {
	if err := run(".", "cargo", "build", "--release", "-p", backendPackage, "--bin", backendBinary); err != nil {
		return err
	}
	if err := run(frontendDir, "npm", "run", "build"); err != nil {
		return err
	}
	src := filepath.Join(cargoTargetDir(), "release", backendBinary)
	dst := filepath.Join(distDir, pluginExecutableName())
	if err := copyExecutable(src, dst); err != nil {
		return err
	}
	fmt.Printf("Plugin ready in %s (backend: %s)\n", distDir, dst)
	return nil
}

// Frontend installs the locked node modules and builds frontend/dist (without the backend).
func Frontend() error {
	if err := run(frontendDir, "npm", "ci", "--no-audit", "--no-fund"); err != nil {
		return err
	}
	return run(frontendDir, "npm", "run", "build")
}

// Test runs the project's whole test suite.
func Test() error {
	return run(".", "bash", "scripts/test.sh")
}

// Clean removes frontend/dist and the backend package's release artifacts. It leaves the rest of
// the shared target directory alone: rebuilding DataFusion from scratch takes about 20 minutes on
// these machines; run `cargo clean` for that.
func Clean() error {
	if err := os.RemoveAll(distDir); err != nil {
		return fmt.Errorf("removing %s: %w", distDir, err)
	}
	return run(".", "cargo", "clean", "--release", "-p", backendPackage)
}

// pluginExecutableName is plugin.json's "executable" with the suffix Grafana appends for the
// platform it runs on.
func pluginExecutableName() string {
	name := fmt.Sprintf("%s_%s_%s", backendBinary, runtime.GOOS, runtime.GOARCH)
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return name
}

// cargoTargetDir follows cargo: CARGO_TARGET_DIR wins over the workspace's .cargo/config.toml,
// which sets "target".
func cargoTargetDir() string {
	if dir := os.Getenv("CARGO_TARGET_DIR"); dir != "" {
		return dir
	}
	return "target"
}

func run(dir, name string, args ...string) error {
	fmt.Printf("+ (cd %s && %s %s)\n", dir, name, strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s (in %s): %w", name, strings.Join(args, " "), dir, err)
	}
	return nil
}

// copyExecutable writes src to dst with mode 0755, through a temporary file so that a Grafana
// watching dist/ never sees a half-written executable.
func copyExecutable(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("opening the backend executable: %w", err)
	}
	defer in.Close()

	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return fmt.Errorf("creating a file in %s: %w", filepath.Dir(dst), err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = os.Chmod(tmp.Name(), 0o755); err != nil {
		return fmt.Errorf("making %s executable: %w", dst, err)
	}
	if err = os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp.Name(), dst, err)
	}
	return nil
}
