package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"reconciled.dev/reconciled/bench/internal/measure"
)

// importSection is section 4: the image, written once as an oci-archive
// by skopeo, imported into an empty store by `reconciled image import`
// against skopeo copy to an OCI layout plus umoci unpack to a bundle, each
// round (median of b.rounds, the order alternated as in section 1).
func (b *bench) importSection(ctx context.Context, img builtImage) error {
	archive := filepath.Join(b.work, "img.tar")
	t0 := time.Now()
	if err := command(ctx, nil, "skopeo", "copy", "--quiet", "--src-tls-verify=false",
		"docker://"+img.ref, "oci-archive:"+archive+":"+img.tag); err != nil {
		return fmt.Errorf("writing the oci-archive: %w", err)
	}
	took := time.Since(t0)
	fi, err := os.Stat(archive)
	if err != nil {
		return err
	}
	fmt.Printf("4. import of an oci-archive (%.1f MB, written once by skopeo copy in %s), %d rounds, empty store each round (ms)\n",
		mb(fi.Size()), secs(took), b.rounds)
	var oursT, theirsT, skopeoT, umociT []time.Duration
	for i := 0; i < b.rounds; i++ {
		doOurs := func() error {
			d, err := b.importOurs(ctx, archive, img.ref, i)
			if err != nil {
				return fmt.Errorf("import round %d, reconciled: %w", i+1, err)
			}
			oursT = append(oursT, d)
			return nil
		}
		var st steps
		doTheirs := func() error {
			var err error
			if st, err = b.importTheirs(ctx, archive, img.tag, i); err != nil {
				return fmt.Errorf("import round %d, skopeo+umoci: %w", i+1, err)
			}
			theirsT = append(theirsT, st.total())
			skopeoT, umociT = append(skopeoT, st.skopeo), append(umociT, st.umoci)
			return nil
		}
		if err := alternate(i, doOurs, doTheirs); err != nil {
			return err
		}
		fmt.Printf("  round %d: reconciled image import %s   skopeo+umoci %s (skopeo copy %s, umoci unpack %s)\n",
			i+1, measure.MS(oursT[i]), measure.MS(theirsT[i]), measure.MS(st.skopeo), measure.MS(st.umoci))
	}
	mo, mt := measure.Median(oursT), measure.Median(theirsT)
	fmt.Printf("  median:  reconciled image import %s   skopeo+umoci %s (skopeo copy %s, umoci unpack %s)\n",
		measure.MS(mo), measure.MS(mt), measure.MS(measure.Median(skopeoT)), measure.MS(measure.Median(umociT)))
	fmt.Printf("  ratio reconciled / skopeo+umoci: %.2fx\n\n", float64(mo)/float64(mt))
	return nil
}

// importOurs times `reconciled image import` of the archive into a new,
// empty store, checks that it stored one image under ref, and removes the
// store.
func (b *bench) importOurs(ctx context.Context, archive, ref string, i int) (time.Duration, error) {
	store := filepath.Join(b.work, fmt.Sprintf("import-store-%d", i))
	if err := os.Mkdir(store, 0o700); err != nil {
		return 0, err
	}
	defer removeTree(store)
	t0 := time.Now()
	out, err := commandOutput(ctx, b.bin, "image", "import", "--image-root", store, "--name", ref, archive)
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	// One line: REF@DIGEST.
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "@sha256:") {
		return 0, fmt.Errorf("image import printed %q, not one REF@DIGEST", out)
	}
	if n, err := storeEntries(store); err != nil || n == 0 {
		return 0, fmt.Errorf("image import left %d blobs and layers in %s (%v)", n, store, err)
	}
	return d, nil
}

// importTheirs times skopeo copy of the archive to an OCI layout and umoci
// unpack of it to a bundle, and removes both.
func (b *bench) importTheirs(ctx context.Context, archive, tag string, i int) (steps, error) {
	var st steps
	layout := filepath.Join(b.work, fmt.Sprintf("import-oci-%d", i))
	bundle := filepath.Join(b.work, fmt.Sprintf("import-bundle-%d", i))
	defer removeTree(layout)
	defer removeTree(bundle)
	t0 := time.Now()
	if err := command(ctx, nil, "skopeo", "copy", "--quiet", "oci-archive:"+archive+":"+tag, "oci:"+layout+":"+tag); err != nil {
		return st, err
	}
	st.skopeo = time.Since(t0)
	t0 = time.Now()
	if err := command(ctx, nil, "umoci", "unpack", "--image", layout+":"+tag, bundle); err != nil {
		return st, err
	}
	st.umoci = time.Since(t0)
	return st, nil
}

// resumeSection is section 5: `reconciled image pull` into an empty store
// through a proxy of ours that cuts the connection once, at half of the
// largest layer blob's body, and what that costs in bytes received, for
// that blob and for the whole image.
func (b *bench) resumeSection(ctx context.Context, img builtImage, registry string) error {
	blob := img.largestLayer()
	blobPath := "/v2/" + img.repo + "/blobs/" + blob.Digest.String()
	p, err := startCutProxy(registry, blobPath, blob.Size/2)
	if err != nil {
		return err
	}
	defer p.stop()
	store := filepath.Join(b.work, "resume-store")
	if err := os.Mkdir(store, 0o700); err != nil {
		return err
	}
	defer removeTree(store)
	ref := p.addr() + "/" + img.repo + ":" + img.tag
	fmt.Printf("5. resume overhead: reconciled image pull into an empty store through a proxy (%s) that cuts the connection once, at 50%% of the largest layer blob (%s, %.2f MB)\n",
		p.addr(), shortHex(blob.Digest.String()), mb(blob.Size))
	t0 := time.Now()
	out, err := commandOutput(ctx, b.bin, "image", "pull", "--image-root", store, "-o", "json", ref)
	took := time.Since(t0)
	if err != nil {
		return err
	}
	var pulled struct{ Digest string }
	if err := json.Unmarshal([]byte(out), &pulled); err != nil {
		return fmt.Errorf("image pull -o json printed %q: %w", out, err)
	}
	if pulled.Digest != img.digest {
		return fmt.Errorf("image pull stored %s, the registry has %s", pulled.Digest, img.digest)
	}
	reqs := p.blobRequests()
	if !p.cut.Load() {
		return fmt.Errorf("the proxy saw no GET of %s reach %d bytes to cut (requests: %v)", blobPath, blob.Size/2, reqs)
	}
	var blobBytes int64
	var seen []string
	for i := range reqs {
		blobBytes += reqs[i].bytes
		seen = append(seen, reqs[i].String())
	}
	total := p.toClient.Load()
	fmt.Printf("  pull: %s (the retry's wait included), stored %s as in the registry\n", measure.MS(took), shortHex(pulled.Digest))
	fmt.Printf("  requests for the blob: %s\n", strings.Join(seen, "; "))
	fmt.Printf("  the blob:        %.2f MB received / %.2f MB = %.3fx (%+d bytes, HTTP heads included; goal < 1.6x)\n",
		mb(blobBytes), mb(blob.Size), float64(blobBytes)/float64(blob.Size), blobBytes-blob.Size)
	fmt.Printf("  the whole image: %.2f MB received / %.2f MB (manifest, config, layers) = %.3fx (%+d bytes)\n",
		mb(total), mb(img.bytes()), float64(total)/float64(img.bytes()), total-img.bytes())
	return nil
}

// commandOutput runs a tool that starts nothing (so pipes are safe) and
// returns its standard output.
func commandOutput(ctx context.Context, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

func shortHex(d string) string {
	if h, ok := strings.CutPrefix(d, "sha256:"); ok && len(h) > 12 {
		return "sha256:" + h[:12]
	}
	return d
}
