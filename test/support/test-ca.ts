import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** A certificate and its private key as PEM files, with the PEM text and SHA-256 fingerprint. */
export interface CertificateFiles {
  certFile: string;
  keyFile: string;
  /** The certificate in PEM. */
  certificate: string;
  /** The private key in PEM. */
  key: string;
  /** SHA-256 of the DER certificate, lowercase hex, the form gateways are registered with. */
  sha256: string;
}

/** A throwaway certificate authority whose files live in one folder. */
export interface TestCa {
  /** The CA certificate in PEM, for clients that must trust the certificates it issues. */
  certificate: string;
  certFile: string;
  /** Issues a server certificate valid for `localhost` and 127.0.0.1. */
  issueServer(name: string): Promise<CertificateFiles>;
}

/** An EC P-256 key, unencrypted: fast to make, and nginx and Node.js read it without a passphrase. */
const keyArguments = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

async function openssl(folder: string, args: string[]): Promise<void> {
  await execFileAsync("openssl", args, { cwd: folder });
}

async function loadFiles(certFile: string, keyFile: string): Promise<CertificateFiles> {
  const certificate = await readFile(certFile, "utf8");
  const fingerprint = new X509Certificate(certificate).fingerprint256;
  return {
    certFile,
    keyFile,
    certificate,
    key: await readFile(keyFile, "utf8"),
    sha256: fingerprint.replace(/:/g, "").toLowerCase(),
  };
}

/** Creates a CA with the `openssl` command in `folder`. */
export async function createTestCa(folder: string): Promise<TestCa> {
  const certFile = join(folder, "ca.pem");
  const keyFile = join(folder, "ca-key.pem");
  await openssl(folder, [
    "req",
    "-x509",
    ...keyArguments,
    "-days",
    "1",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-subj",
    "/CN=writ test CA",
  ]);
  const certificate = await readFile(certFile, "utf8");

  return {
    certificate,
    certFile,
    async issueServer(name) {
      const leafKey = join(folder, `${name}-key.pem`);
      const leafCert = join(folder, `${name}.pem`);
      const request = join(folder, `${name}.csr`);
      const extensions = join(folder, `${name}.ext`);
      // Node.js matches an IP host against IP SANs, while nginx 1.22 checks only DNS names (it calls
      // X509_check_host), so the certificate carries both and nginx verifies it as `localhost`.
      await writeFile(
        extensions,
        [
          "basicConstraints=CA:FALSE",
          "extendedKeyUsage=serverAuth",
          "subjectAltName=DNS:localhost,IP:127.0.0.1",
          "",
        ].join("\n"),
      );
      await openssl(folder, [
        "req",
        "-new",
        ...keyArguments,
        "-keyout",
        leafKey,
        "-out",
        request,
        "-subj",
        "/CN=localhost",
      ]);
      await openssl(folder, [
        "x509",
        "-req",
        "-in",
        request,
        "-CA",
        certFile,
        "-CAkey",
        keyFile,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        extensions,
        "-out",
        leafCert,
      ]);
      return loadFiles(leafCert, leafKey);
    },
  };
}

/**
 * Creates a self-signed client certificate in `folder`. The broker pins a gateway's certificate by
 * fingerprint and checks no CA chain, so a self-signed one is what an operator may register.
 */
export async function createClientCertificate(folder: string, name: string): Promise<CertificateFiles> {
  const certFile = join(folder, `${name}.pem`);
  const keyFile = join(folder, `${name}-key.pem`);
  await openssl(folder, [
    "req",
    "-x509",
    ...keyArguments,
    "-days",
    "1",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-subj",
    `/CN=${name}`,
    "-addext",
    "extendedKeyUsage=clientAuth",
  ]);
  return loadFiles(certFile, keyFile);
}
