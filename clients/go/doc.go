// Package persona is the Go SDK for Persona, the per-user memory service.
//
// The generated messages and stubs live in
// github.com/persona-dev/persona/clients/go/gen/persona/v1 (package personav1). A [Client]
// embeds the generated MemoryServiceClient, so every RPC is a method with the generated
// request and response types, and adds what every call needs: the API key as `x-api-key`
// call metadata, a default deadline for unary calls, retries with backoff on UNAVAILABLE for
// calls that are safe to repeat, and errors that expose the server's rich status ([Error]).
// [Client.Subscribe] reads StreamContext and resumes with the last resume token after the
// connection drops.
//
//	client, err := persona.New("127.0.0.1:50051", persona.WithAPIKey(key))
//	if err != nil { ... }
//	defer client.Close()
//	resp, err := client.Recall(ctx, &personav1.RecallRequest{UserId: "u1", Query: "home", MaxResults: 5})
//	var perr *persona.Error
//	if errors.As(err, &perr) { fmt.Println(perr.Reason, perr.FieldViolations) }
package persona
