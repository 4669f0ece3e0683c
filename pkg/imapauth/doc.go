// Package imapauth checks SMTP users' credentials by logging in to an IMAP server with strict certificate verification, and serves Exim's readsocket.
package imapauth
